//! Manifests parsed from real files: `fixtures/` holds
//! a wheel's METADATA as pip installed it (distro 1.8.0, Debian's package), a
//! crate's Cargo.toml as cargo unpacked it (itoa 1.0.18) and an npm package's
//! package.json as npm installed it (@openai/codex 0.169.0).

use super::*;

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
    let empty = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(read(NPM, empty.path()).unwrap_err(), "manifest empty");
    let err = parse(NPM, "{\"name\": \"x\"}").unwrap_err();
    assert!(err.starts_with("not a package.json"), "{err}");
    // The description after the headers does not count.
    let err = parse(PYPI, "Metadata-Version: 2.1\nName: x\n\nVersion: 1\n").unwrap_err();
    assert_eq!(err, "METADATA without Name and Version");
    let err = parse(CRATES, "[workspace]\n").unwrap_err();
    assert!(err.starts_with("not a crate's Cargo.toml"), "{err}");
    assert!(parse(GO, "module x\n").is_err());
}

#[test]
fn a_source_tree_is_named_by_its_pkg_info_else_its_pyproject() {
    let tree = tempfile::tempdir().unwrap();
    assert_eq!(source_tree_name(tree.path()), None, "neither file");
    std::fs::write(
        tree.path().join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools\"]\n\n[project]\nname = \"from-pyproject\"\n",
    )
    .unwrap();
    assert_eq!(
        source_tree_name(tree.path()).as_deref(),
        Some("from-pyproject")
    );
    std::fs::write(
        tree.path().join("PKG-INFO"),
        "Metadata-Version: 2.1\nName: from-pkg-info\nVersion: 1.0\n\nName: not-this\n",
    )
    .unwrap();
    assert_eq!(
        source_tree_name(tree.path()).as_deref(),
        Some("from-pkg-info"),
        "a source distribution's PKG-INFO first"
    );
    // A link planted in the tree is not followed (the daemon reads it as root).
    let other = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(tree.path().join("PKG-INFO"), other.path().join("PKG-INFO"))
        .unwrap();
    assert_eq!(source_tree_name(other.path()), None);
}
