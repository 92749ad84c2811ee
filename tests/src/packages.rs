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
