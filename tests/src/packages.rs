//! Packages for install tests: an npm package's tarball (`npm pack`) and a wheel,
//! built from nothing on the network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes a wheel: its module, metadata and record, zipped (what a build backend
/// writes). Arguments: name, version, the wheel's path.
const WHEEL_PY: &str = r#"
import base64, hashlib, sys, zipfile
name, version, out = sys.argv[1:4]
info = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": b"VALUE = 1\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode(),
    f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: guard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for n, data in files.items():
        z.writestr(n, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{n},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
"#;

/// A wheel of package `name` `version` (one module, its metadata and record), as
/// a build backend writes one: a zip file.
pub fn wheel(dir: &Path, name: &str, version: &str) -> PathBuf {
    let path = dir.join(format!("{name}-{version}-py3-none-any.whl"));
    let script = WHEEL_PY;
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", script, name, version])
        .arg(&path)
        .status()
        .expect("run python3");
    assert!(ok.success(), "building the wheel failed");
    path
}

/// An npm package tarball of `name` 1.4.2, with `postinstall.js` as its postinstall
/// script when given.
pub fn npm_tarball(dir: &Path, name: &str, postinstall: Option<&str>, home: &Path) -> PathBuf {
    let src = dir.join(format!("npm-src-{name}"));
    fs::create_dir_all(&src).expect("mkdir npm-src");
    let scripts = if postinstall.is_some() {
        r#","scripts":{"postinstall":"node postinstall.js"}"#
    } else {
        ""
    };
    fs::write(
        src.join("package.json"),
        format!(r#"{{"name":"{name}","version":"1.4.2"{scripts}}}"#),
    )
    .expect("package.json");
    if let Some(js) = postinstall {
        fs::write(src.join("postinstall.js"), js).expect("postinstall.js");
    }
    let out = Command::new("npm")
        .args(["pack", "--offline", "--pack-destination"])
        .arg(dir)
        .current_dir(&src)
        .env("HOME", home)
        .env("npm_config_cache", home.join("npm-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run npm pack");
    assert!(out.status.success(), "npm pack: {out:?}");
    dir.join(format!("{name}-1.4.2.tgz"))
}

/// Declared versus done with packages (issue 46), as the real agents' tests script
/// it: `npm install` of a local package whose postinstall script connects to
/// 127.0.0.1:9 (refused) and then reads the SSH key, `pip install` of a local wheel
/// in a virtual environment, a command that leaves a process behind (in a session of
/// its own) that runs `/bin/true` once the next call creates `go`, and that call.
pub struct InstallSession {
    /// One per model turn.
    pub commands: Vec<String>,
    pub npm_name: String,
    pub wheel_name: String,
    pub wheel_version: String,
}

impl InstallSession {
    /// Its packages under `dir` (readable by the agent's user), its virtual
    /// environment at `venv`; the npm package named `npm_name`.
    pub fn new(dir: &Path, venv: &Path, npm_name: &str, wheel_name: &str) -> Self {
        let postinstall = "const net = require('net');\n\
             const s = net.connect(9, '127.0.0.1');\n\
             s.on('error', () => {\n\
               require('fs').readFileSync(require('os').homedir() + '/.ssh/id_rsa');\n\
             });\n";
        let tarball = npm_tarball(dir, npm_name, Some(postinstall), dir);
        let wheel_version = "2.1";
        let wheel = wheel(dir, wheel_name, wheel_version);
        let made = Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "python3 -m venv failed");
        let commands = vec![
            format!(
                "npm install --offline --no-audit --no-fund {}",
                tarball.display()
            ),
            format!(
                "{} install --no-index --no-deps --disable-pip-version-check {}",
                venv.join("bin/pip").display(),
                wheel.display()
            ),
            "setsid -f sh -c 'while [ ! -e go ]; do sleep 0.1; done; exec /bin/true' \
             </dev/null >/dev/null 2>&1"
                .to_owned(),
            "touch go && sleep 1".to_owned(),
        ];
        Self {
            commands,
            npm_name: npm_name.to_owned(),
            wheel_name: wheel_name.to_owned(),
            wheel_version: wheel_version.to_owned(),
        }
    }

    /// What a reviewer checks in the session's `report` (JSON), whose calls have
    /// the ids `ids`: every call declared in order, ended, with its command and
    /// processes; the npm call's install script stopped reading the key and its
    /// connect; as undeclared exactly the install script (in the npm call) and the
    /// process left behind (by the third call; `outside_calls` entries, the
    /// agent's own helpers, aside), which ran `/bin/true` (with its loop's `sleep`
    /// when that started after the call ended); both packages with their
    /// versions (the npm package's unless npm removed it, its install script
    /// having failed, before guard read its manifest: then its note says
    /// `manifest gone`, as docs/report.md has it). `context`: what the agent printed.
    pub fn check(&self, report: &serde_json::Value, ids: &[String], context: &str) {
        let calls = report["calls"]["items"].as_array().expect("calls");
        let got: Vec<&str> = calls.iter().filter_map(|c| c["id"].as_str()).collect();
        assert_eq!(got, ids, "{report:#}\n{context}");
        for (c, command) in calls.iter().zip(&self.commands) {
            assert_eq!(c["command"], command.as_str(), "{c:#}");
            assert!(c["ended"].is_string(), "{c:#}");
            assert!(
                c["execs"].as_u64().is_some_and(|n| n > 0),
                "the call ran its command: {c:#}"
            );
        }
        let npm_call = &calls[0];
        let has = |key: &str, what: &dyn Fn(&str) -> bool| {
            npm_call[key]
                .as_array()
                .is_some_and(|v| v.iter().filter_map(|v| v.as_str()).any(what))
        };
        assert!(
            has("verdicts", &|v| v.starts_with("credentials-read: ")),
            "the install script's read of the SSH key, stopped: {npm_call:#}"
        );
        assert!(
            has("destinations", &|d| d.contains("127.0.0.1:9")),
            "the install script's connect: {npm_call:#}"
        );
        let undeclared: Vec<(&serde_json::Value, (&str, &str))> = report["undeclared"]["items"]
            .as_array()
            .expect("undeclared")
            .iter()
            .map(|u| {
                let why = u["why"].as_str().unwrap_or("?");
                (u, (why, u["call"].as_str().unwrap_or("-")))
            })
            .filter(|(_, (why, _))| *why != "outside_calls")
            .collect();
        // The process left behind is one entry per process that ran after its call
        // ended: the loop's shell (which runs /bin/true), and its `sleep` too when
        // that started after the call's end (a busy machine: 14 ms after, in a CI
        // run of 2026-11-29).
        let mut kinds: Vec<(&str, &str)> = undeclared.iter().map(|(_, k)| *k).collect();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                ("install_script", ids[0].as_str()),
                ("outlived_call", ids[2].as_str())
            ],
            "{report:#}"
        );
        let script = undeclared[0].0;
        assert!(
            script["command"]
                .as_str()
                .is_some_and(|c| c.contains("node postinstall.js")),
            "{script:#}"
        );
        let behind: Vec<&serde_json::Value> = undeclared[1..].iter().map(|(u, _)| *u).collect();
        assert!(
            behind.iter().any(|b| b["did"].as_array().is_some_and(|d| d
                .iter()
                .filter_map(|d| d.as_str())
                .any(|d| d.contains("/bin/true")))),
            "{behind:#?}"
        );
        let packages: Vec<(&str, &str, &str)> = report["packages"]["items"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                let s = |k: &str| p[k].as_str().unwrap_or("?");
                let version = match (s("version"), s("note")) {
                    ("?", "manifest gone") if s("ecosystem") == "npm" => "1.4.2",
                    (v, _) => v,
                };
                (s("ecosystem"), s("name"), version)
            })
            .collect();
        assert_eq!(
            packages,
            [
                ("npm", self.npm_name.as_str(), "1.4.2"),
                (
                    "pypi",
                    self.wheel_name.as_str(),
                    self.wheel_version.as_str()
                )
            ],
            "{report:#}"
        );
        assert_eq!(
            report["scripts"]["items"][0]["package"],
            self.npm_name.as_str()
        );
    }
}
