//! Packages a session installs, end to end: under `guard run`, a scripted session
//! runs the real npm on a local package tarball whose postinstall script connects to
//! a listener on loopback and then tries a secret, and the real pip on a local wheel
//! in a virtual environment; then npm on a package whose name is one edit from
//! express's. The session's report names the packages with their versions, the
//! install script with its command, what it read and where it connected, and what
//! guard did to it; every event of the script's processes carries its package; the
//! near miss's installer is killed when it writes the package's manifest.

use std::fs;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use guard_tests::{
    Daemon, EventsTo, Running, TempDir, guard_bin,
    packages::{npm_tarball, wheel},
    scaled, session_ended, session_of, unique_name, wait_until, write_policy,
};
use serde_json::Value;

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scripted install session, then its report checked: packages, near miss, install script, markdown"
)]
fn an_install_s_packages_and_its_install_script_are_in_the_session_s_report() {
    let dir = TempDir::new("guard-e2e-packages");
    let ws = dir.join("ws");
    let home = dir.join("home");
    let secrets = dir.join("secrets");
    let reports = dir.join("reports");
    for d in [&ws, &home, &secrets] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let secret = secrets.join("token");
    fs::write(&secret, "s3cr3t\n").expect("token");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let port = listener.local_addr().expect("addr").port();
    // A name nothing else installs, so the report's entry is this test's.
    let npm_name = format!("guard-e2e-{}", unique_name("p")).to_lowercase();
    // Its postinstall script connects to the listener, then reads the secret.
    let postinstall = format!(
        "const net = require('net');\n\
         const s = net.connect({port}, '127.0.0.1', () => {{\n\
           s.end('hi');\n\
           require('fs').readFileSync({secret:?});\n\
         }});\n",
        secret = secret.display().to_string(),
    );
    let tarball = npm_tarball(dir.path(), &npm_name, Some(&postinstall), &home);
    // One edit from express, one of npm's most downloaded packages. Its own
    // postinstall script keeps npm waiting for a while: npm is alive when guard's
    // kill (from user space, after the manifest's write) lands. (A package with no
    // script can be installed and npm gone within milliseconds: the violation is
    // then reported with outcome `gone`.)
    let near = npm_tarball(
        dir.path(),
        "expresss",
        Some("setTimeout(() => {}, 3000);\n"),
        &home,
    );
    let wheel = wheel(dir.path(), "guard_e2e_wheel", "2.1");
    let venv = dir.join("venv");
    let ok = Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(ok.success(), "python3 -m venv failed");

    let (agent_bin, policy) =
        agent_and_policy(dir.path(), &reports, &secrets, "near_miss = \"kill\"");
    let args = [std::ffi::OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);

    // npm fails (its script did, then guard killed it), pip goes on: the session
    // reaches its end.
    let script = format!(
        "npm install --offline --no-audit --no-fund {tarball}; \
         npm install --offline --no-audit --no-fund {near}; \
         {pip} install --no-index --no-deps --disable-pip-version-check {wheel}; exit 0",
        tarball = tarball.display(),
        near = near.display(),
        pip = venv.join("bin/pip").display(),
        wheel = wheel.display(),
    );
    let (session, events) = run_session(
        &mut daemon,
        &agent_bin,
        &ws,
        &script,
        &[
            ("HOME", home.clone()),
            ("npm_config_cache", home.join("npm-cache")),
        ],
    );
    let json_path = reports.join(format!("{session}.json"));
    wait_until("the report", scaled(Duration::from_secs(10)), || {
        json_path.exists()
    });
    let report: Value =
        serde_json::from_str(&fs::read_to_string(&json_path).expect("read the report"))
            .expect("JSON report");

    let packages: Vec<(String, String, String)> = report["packages"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages in {report:#}"))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("-").to_owned();
            (s("ecosystem"), s("name"), s("version"))
        })
        .collect();
    let package = |e: &str, n: &str, v: &str| (e.to_owned(), n.to_owned(), v.to_owned());
    // The near miss's installer is killed right after it opened the manifest: before
    // or after it wrote it (its version, or a note saying the file is empty).
    let near_version = match report["packages"]["items"][1]["note"].as_str() {
        Some("manifest empty") => "-",
        _ => "1.4.2",
    };
    assert_eq!(
        packages,
        [
            package("npm", &npm_name, "1.4.2"),
            package("npm", "expresss", near_version),
            package("pypi", "guard_e2e_wheel", "2.1"),
        ],
        "{report:#}"
    );
    // The near miss: its installer killed when it wrote the manifest.
    let near_miss: Vec<&Value> = report["violations"]["items"]
        .as_array()
        .expect("violations")
        .iter()
        .filter(|v| v["rule"] == "packages.near-miss")
        .collect();
    assert_eq!(near_miss.len(), 1, "{report:#}");
    assert_eq!(near_miss[0]["outcome"], "killed", "{report:#}");
    assert!(
        near_miss[0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("node_modules/expresss/package.json")
                && w.ends_with("npm package expresss is one edit from the well-known express")),
        "{report:#}"
    );
    let npm = &report["packages"]["items"][0];
    assert!(
        npm["command"]
            .as_str()
            .is_some_and(|c| c.contains("install") && c.contains(&npm_name)),
        "the installing command: {report:#}"
    );

    let scripts = report["scripts"]["items"].as_array().expect("scripts");
    let install: Vec<&Value> = scripts
        .iter()
        .filter(|s| s["package"] == npm_name.as_str())
        .collect();
    assert_eq!(install.len(), 1, "one install script: {report:#}");
    let install = install[0];
    assert_eq!(install["install"], true, "{report:#}");
    assert!(
        install["command"]
            .as_str()
            .is_some_and(|c| c.contains("node postinstall.js")),
        "{report:#}"
    );
    let secret_path = fs::canonicalize(&secret).expect("canonical secret");
    assert_eq!(
        install["secrets"],
        serde_json::json!([secret_path.display().to_string()]),
        "{report:#}"
    );
    assert_eq!(
        install["destinations"],
        serde_json::json!([format!("127.0.0.1:{port}")]),
        "{report:#}"
    );
    let verdict = install["verdicts"][0].as_str().unwrap_or_default();
    assert!(
        verdict == "test-secret: killed" || verdict == "test-secret: denied",
        "what guard did to the script: {report:#}"
    );

    // Every event of the script's processes names its package: the secret's open
    // among them.
    let open = events
        .iter()
        .find(|e| e.kind() == "open" && e.str("path") == Some(secret_path.to_str().expect("utf-8")))
        .unwrap_or_else(|| panic!("no open of the secret"));
    assert_eq!(open.str("package"), Some(npm_name.as_str()), "{open:?}");

    let md = fs::read_to_string(reports.join(format!("{session}.md"))).expect("markdown");
    for needle in [
        "## Packages installed",
        &format!("| {npm_name} | 1.4.2 | npm |"),
        "| guard_e2e_wheel | 2.1 | pypi |",
        "## Package scripts that ran",
        "**install**",
    ] {
        assert!(md.contains(needle), "{needle:?} not in:\n{md}");
    }
    drop(listener);
    daemon.stop_ok();
}

/// `[packages] first_seen` against a fleet of the test's own: with the fleet's list
/// of the organisation's package names in hand (`guard status` says so), a
/// session's install of a name nobody installed is a violation, alerted; the
/// session's summary reaches the fleet; a daemon started afresh (it holds only
/// what the fleet gives it) lets that name by and flags the next new one.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "two daemons in turn on one fleet: the second's check depends on what the first's session sent it"
)]
fn a_package_is_new_to_the_organisation_until_the_fleet_has_seen_it() {
    let fleet = guard_tests::fleet::Fleet::start();
    let dir = TempDir::new("guard-e2e-firstseen");
    let home = dir.join("home");
    let state = dir.join("state");
    for d in [&home, &state] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let known = format!("guard-e2e-{}", unique_name("k")).to_lowercase();
    let fresh = format!("guard-e2e-{}", unique_name("n")).to_lowercase();
    let known_tgz = npm_tarball(dir.path(), &known, None, &home);
    let fresh_tgz = npm_tarball(dir.path(), &fresh, None, &home);
    let agent = unique_name("ga");
    let agent_bin = dir.join(&agent);
    fs::copy("/bin/sh", &agent_bin).expect("copy /bin/sh");
    let token = dir.join("export-token");
    fs::write(&token, &fleet.ingest_token).expect("write the export token");
    let policy = dir.join("guard.toml");
    // The fleet serves no policy (it has no signing key): the host's own stays in
    // force, and its `[fleet]` names where the package names come from.
    write_policy(
        &policy,
        &format!(
            r#"mode = "enforce"

[agents]
names = ["{agent}"]

[packages]
first_seen = "alert"

[fleet]
policy_url = "{base}/v1/policy"
public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
interval = "1s"
"#,
            base = fleet.base,
        ),
    );
    let url = fleet.ingest_url();
    let args = [
        std::ffi::OsStr::new("--policy"),
        policy.as_os_str(),
        std::ffi::OsStr::new("--export-endpoint"),
        std::ffi::OsStr::new(&url),
        std::ffi::OsStr::new("--export-token-file"),
        token.as_os_str(),
        std::ffi::OsStr::new("--state-dir"),
        state.as_os_str(),
    ];
    let ready = |daemon: &Daemon, at_least: u64| {
        let mut last = Value::Null;
        wait_until(
            "the organisation's package names",
            scaled(Duration::from_secs(30)),
            || {
                last = daemon.status()["package_names"].clone();
                last["ready"] == true && last["names"].as_u64().is_some_and(|n| n >= at_least)
            },
        );
        last
    };
    // `npm install` of `tarballs` in a fresh workspace, as a session under `guard
    // run`: its id, and the `what` of its `packages.first-seen` violations.
    let install = |daemon: &mut Daemon, ws: &str, tarballs: &[&std::path::Path]| {
        let ws = dir.join(ws);
        fs::create_dir_all(&ws).expect("mkdir ws");
        let script = tarballs
            .iter()
            .map(|t| format!("npm install --offline --no-audit --no-fund {}", t.display()))
            .collect::<Vec<_>>()
            .join(" && ");
        let (session, _) = run_session(
            daemon,
            &agent_bin,
            &ws,
            &script,
            &[
                ("HOME", home.clone()),
                ("npm_config_cache", home.join("npm-cache")),
            ],
        );
        let report = daemon.report(&session);
        let flagged: Vec<(String, String)> = report["violations"]["items"]
            .as_array()
            .expect("violations")
            .iter()
            .filter(|v| v["rule"] == "packages.first-seen")
            .map(|v| {
                (
                    v["what"].as_str().unwrap_or_default().to_owned(),
                    v["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (session, flagged, report)
    };

    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    // An organisation that has seen nothing yet: the list is whole, and empty.
    let names = ready(&daemon, 0);
    assert_eq!(names["names"], 0, "{names}");
    let (session, flagged, report) = install(&mut daemon, "ws1", &[&known_tgz]);
    assert_eq!(flagged.len(), 1, "{report:#}");
    assert!(
        flagged[0].0.ends_with(&format!(
            "npm package {known} is new to the organisation: the fleet's inventory has no \
             package of that name"
        )),
        "{flagged:?}"
    );
    assert_eq!(flagged[0].1, "alerted", "{flagged:?}");
    // The summary reaches the fleet, with the package in its inventory.
    fleet.wait_ended(&session, scaled(Duration::from_secs(60)));
    let inventory = fleet.page("/api/packages");
    assert!(
        inventory.contains(&format!("\"name\":\"{known}\"")),
        "{inventory}"
    );
    daemon.stop_ok();

    // A daemon started afresh knows only what the fleet gives it.
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    let names = ready(&daemon, 1);
    assert_eq!(names["names"], 1, "{names}");
    let (_, flagged, report) = install(&mut daemon, "ws2", &[&known_tgz, &fresh_tgz]);
    assert_eq!(flagged.len(), 1, "only the new name: {report:#}");
    assert!(
        flagged[0]
            .0
            .contains(&format!("npm package {fresh} is new")),
        "{flagged:?}"
    );
    daemon.stop_ok();
}

/// A crate's build script is a package script: under `guard run`, a session builds
/// a local crate with the real cargo, whose `build.rs` reads a secret a kill rule
/// protects. Its process carries the crate's name as its package, the report lists
/// the build script with the secret it opened and guard's kill, and it is not an
/// install script (the crate is the project's own).
#[test]
fn a_crate_s_build_script_is_a_package_script_in_the_report() {
    let (dir, secrets, reports, secret) = with_secret("guard-e2e-buildrs");
    let krate = dir.join("app");
    fs::create_dir_all(krate.join("src")).expect("mkdir");
    let name = format!("guard-e2e-{}", unique_name("b")).to_lowercase();
    fs::write(
        krate.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n"),
    )
    .expect("Cargo.toml");
    fs::write(krate.join("src/main.rs"), "fn main() {}\n").expect("main.rs");
    fs::write(
        krate.join("build.rs"),
        format!(
            "fn main() {{ let _ = std::fs::read_to_string({:?}); }}\n",
            secret.display().to_string()
        ),
    )
    .expect("build.rs");
    let (mut daemon, session, events) = secret_session(
        (dir.path(), &secrets, &reports),
        &krate,
        "cargo build --offline --quiet; exit 0",
        &[("CARGO_TARGET_DIR", krate.join("target"))],
    );
    let report = daemon.report(&session);
    let script = package_script(&report, &events, &name, "build-script-build", &secret);
    assert_eq!(
        script["install"], false,
        "the project's own crate: {script:#}"
    );
    daemon.stop_ok();
}

/// A source distribution's build (issue 46): `pip install` of a local sdist, built by
/// its `setup.py` through pip's PEP 517 hooks (setuptools, no build isolation),
/// whose `setup.py` reads a secret a kill rule protects. The build backend's
/// processes carry the project's name (its `PKG-INFO`, read from the build's
/// working directory) as their package: the report lists the build as a package
/// script, with the secret it opened and guard's kill.
#[test]
fn a_source_distribution_s_build_is_a_package_script_in_the_report() {
    let (dir, secrets, reports, secret) = with_secret("guard-e2e-sdist");
    let name = format!("guard_e2e_{}", unique_name("s")).to_lowercase();
    let tree = dir.join(format!("{name}-1.0"));
    fs::create_dir_all(&tree).expect("mkdir");
    fs::write(
        tree.join("setup.py"),
        format!(
            "from setuptools import setup\nopen({:?}).read()\nsetup(name={name:?}, version='1.0', py_modules=[])\n",
            secret.display().to_string()
        ),
    )
    .expect("setup.py");
    fs::write(
        tree.join("PKG-INFO"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"),
    )
    .expect("PKG-INFO");
    let sdist = dir.join(format!("{name}-1.0.tar.gz"));
    let packed = Command::new("tar")
        .arg("czf")
        .arg(&sdist)
        .arg("-C")
        .arg(dir.path())
        .arg(format!("{name}-1.0"))
        .status()
        .expect("tar");
    assert!(packed.success(), "tar failed");
    // setuptools and wheel from Debian's packages (the venv sees them): nothing is
    // downloaded.
    let venv = dir.join("venv");
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--system-site-packages"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(made.success(), "python3 -m venv failed");
    let (mut daemon, session, events) = secret_session(
        (dir.path(), &secrets, &reports),
        dir.path(),
        &format!(
            "{}/bin/pip install --no-index --no-deps --no-build-isolation --use-pep517 \
             --disable-pip-version-check {}; exit 0",
            venv.display(),
            sdist.display()
        ),
        &[],
    );
    let report = daemon.report(&session);
    package_script(&report, &events, &name, "_in_process.py", &secret);
    daemon.stop_ok();
}

/// A directory of the test's (`prefix`), with `secrets/token` in it: the directory,
/// `secrets`, where reports go, the token.
fn with_secret(
    prefix: &str,
) -> (
    TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = TempDir::new(prefix);
    let secrets = dir.join("secrets");
    fs::create_dir_all(&secrets).expect("mkdir");
    let secret = secrets.join("token");
    fs::write(&secret, "s3cr3t\n").expect("token");
    let reports = dir.join("reports");
    (dir, secrets, reports, secret)
}

/// A daemon enforcing [`agent_and_policy`]'s policy (no `[packages]`) for `dir`,
/// `secrets` and `reports`, and [`run_session`] of `script` in `cwd` under it.
fn secret_session(
    (dir, secrets, reports): (&std::path::Path, &std::path::Path, &std::path::Path),
    cwd: &std::path::Path,
    script: &str,
    envs: &[(&str, std::path::PathBuf)],
) -> (Daemon, String, Vec<guard_tests::Event>) {
    let (agent_bin, policy) = agent_and_policy(dir, reports, secrets, "");
    let args = [std::ffi::OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    let (session, events) = run_session(&mut daemon, &agent_bin, cwd, script, envs);
    (daemon, session, events)
}

/// The one package script of `name` in `report` (checked: its command names
/// `program`, it opened `secret` and guard killed or refused it), its exec's event
/// carrying the package's name.
fn package_script<'r>(
    report: &'r Value,
    events: &[guard_tests::Event],
    name: &str,
    program: &str,
    secret: &std::path::Path,
) -> &'r Value {
    let scripts: Vec<&Value> = report["scripts"]["items"]
        .as_array()
        .expect("scripts")
        .iter()
        .filter(|s| s["package"] == name)
        .collect();
    assert_eq!(scripts.len(), 1, "one script of {name}: {report:#}");
    let script = scripts[0];
    assert!(
        script["command"]
            .as_str()
            .is_some_and(|c| c.contains(program)),
        "{script:#}"
    );
    let secret_path = fs::canonicalize(secret).expect("canonical secret");
    assert_eq!(
        script["secrets"],
        serde_json::json!([secret_path.display().to_string()]),
        "{script:#}"
    );
    let verdict = script["verdicts"][0].as_str().unwrap_or_default();
    assert!(
        verdict == "test-secret: killed" || verdict == "test-secret: denied",
        "what guard did to the script: {script:#}"
    );
    let exec = events
        .iter()
        .find(|e| {
            e.kind() == "exec"
                && e.strings("argv")
                    .is_some_and(|argv| argv.iter().take(3).any(|a| a.ends_with(program)))
        })
        .unwrap_or_else(|| panic!("no exec of {program}"));
    assert_eq!(exec.str("package"), Some(name), "{exec:?}");
    script
}

/// `guard run` of `agent_bin -c script` (a shell under the test's agent name) in
/// `cwd`, with `envs` added, at `daemon`: it must succeed; the session's id and its
/// events up to its end.
fn run_session(
    daemon: &mut Daemon,
    agent_bin: &std::path::Path,
    cwd: &std::path::Path,
    script: &str,
    envs: &[(&str, std::path::PathBuf)],
) -> (String, Vec<guard_tests::Event>) {
    let mut cmd = Command::new(guard_bin());
    cmd.arg("run")
        .arg("--socket")
        .arg(daemon.socket())
        .arg("--")
        .arg(agent_bin)
        .args(["-c", script])
        .current_dir(cwd)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PIP_FIND_LINKS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let run = Running::spawn(cmd).finish();
    run.assert_success();
    let events = daemon.wait_for("the end of the session", session_ended(run.pid));
    let session = session_of(&events, run.pid);
    (session, events)
}

/// The session's agent (a shell under a name of this test's, in `dir`, so that what
/// it runs are its tools) and a policy file that enforces on it, writes reports to
/// `reports`, kills a read of `secrets`, with `packages` as its `[packages]`.
fn agent_and_policy(
    dir: &std::path::Path,
    reports: &std::path::Path,
    secrets: &std::path::Path,
    packages: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let agent = unique_name("ga");
    let agent_bin = dir.join(&agent);
    fs::copy("/bin/sh", &agent_bin).expect("copy /bin/sh");
    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            r#"mode = "enforce"

[agents]
names = ["{agent}"]

[report]
dir = "{reports}"

[packages]
{packages}

[[rule]]
id = "test-secret"
kind = "file"
secret = true
access = ["read"]
paths = ["{secrets}/**"]
action = "kill"
"#,
            reports = reports.display(),
            secrets = secrets.display(),
        ),
    );
    (agent_bin, policy)
}
