//! Manifests recognised from paths, and parsed from real files: `fixtures/` holds
//! a wheel's METADATA as pip installed it (distro 1.8.0, Debian's package), a
//! crate's Cargo.toml as cargo unpacked it (itoa 1.0.18) and an npm package's
//! package.json as npm installed it (@openai/codex 0.169.0).

use super::*;

fn m(ecosystem: &'static str, name: &str, version: Option<&str>) -> Option<Manifest> {
    Some(Manifest {
        ecosystem,
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

#[test]
fn the_manifests_each_install_writes_are_recognised_by_their_paths() {
    let cases = [
        (
            "/w/app/node_modules/left-pad/package.json",
            m(NPM, "left-pad", None),
        ),
        (
            "/w/app/node_modules/@openai/codex/package.json",
            m(NPM, "@openai/codex", None),
        ),
        // A dependency's own dependency.
        (
            "/w/node_modules/a/node_modules/b/package.json",
            m(NPM, "b", None),
        ),
        ("node_modules/c/package.json", m(NPM, "c", None)),
        // Files of a package's tree, the workspace's own manifest, npm's lockfile.
        ("/w/app/node_modules/left-pad/lib/package.json", None),
        ("/w/app/package.json", None),
        ("/w/app/node_modules/.package-lock.json", None),
        ("/w/app/node_modules/@scope/package.json", None),
        ("/w/app/node_modules/.bin/package.json", None),
        (
            "/v/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            m(PYPI, "requests", Some("2.31.0")),
        ),
        (
            "/v/lib/python3.11/site-packages/typing_extensions-4.12.2.dist-info/METADATA",
            m(PYPI, "typing_extensions", Some("4.12.2")),
        ),
        ("/v/lib/python3.11/site-packages/requests/METADATA", None),
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-json-x-1.0.0-rc.1/Cargo.toml",
            m(CRATES, "serde-json-x", Some("1.0.0-rc.1")),
        ),
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/itoa-1.0.18/Cargo.toml",
            m(CRATES, "itoa", Some("1.0.18")),
        ),
        // A crate of the workspace, a file of a crate's tree.
        ("/w/app/crates/itoa-1.0.18/Cargo.toml", None),
        (
            "/root/.cargo/registry/src/index/itoa-1.0.18/sub/Cargo.toml",
            None,
        ),
        (
            "/root/go/pkg/mod/github.com/!burnt!sushi/toml@v1.3.2/go.mod",
            m(GO, "github.com/BurntSushi/toml", Some("v1.3.2")),
        ),
        ("/root/go/pkg/mod/cache/download/x@v1/go.mod", None),
        ("/root/go/pkg/mod/github.com/a/b@v1.0.0/sub/go.mod", None),
        ("/etc/passwd", None),
    ];
    for (path, want) in cases {
        assert_eq!(manifest(path), want, "{path}");
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/packages/fixtures")
        .join(name)
}

#[test]
fn real_manifests_give_their_package_s_name_and_version() {
    let read = |ecosystem, file| read(ecosystem, &fixture(file)).unwrap();
    assert_eq!(
        read(NPM, "openai-codex.package.json"),
        Read {
            name: "@openai/codex".into(),
            version: "0.169.0".into()
        }
    );
    assert_eq!(
        read(PYPI, "distro-1.8.0.METADATA"),
        Read {
            name: "distro".into(),
            version: "1.8.0".into()
        }
    );
    assert_eq!(
        read(CRATES, "itoa-1.0.18.Cargo.toml"),
        Read {
            name: "itoa".into(),
            version: "1.0.18".into()
        }
    );
}

#[test]
fn a_manifest_that_cannot_be_read_says_why() {
    assert_eq!(
        read(NPM, &fixture("absent.package.json")).unwrap_err(),
        "manifest gone"
    );
    let err = parse(NPM, "{\"name\": \"x\"}").unwrap_err();
    assert!(err.starts_with("not a package.json"), "{err}");
    // The description after the headers does not count.
    let err = parse(PYPI, "Metadata-Version: 2.1\nName: x\n\nVersion: 1\n").unwrap_err();
    assert_eq!(err, "METADATA without Name and Version");
    let err = parse(CRATES, "[workspace]\n").unwrap_err();
    assert!(err.starts_with("not a crate's Cargo.toml"), "{err}");
    assert!(parse(GO, "module x\n").is_err());
}
