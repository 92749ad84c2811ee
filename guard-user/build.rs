//! Builds guard-ebpf for the bpf target with aya-build, in its default and its compat
//! build; both objects are embedded in the `guard` binary (see `ebpf::Build`).
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "guard-ebpf")
        .ok_or_else(|| anyhow!("guard-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // `-Z build-std=core` on the stable toolchain: aya-build passes it when
    // RUSTC_BOOTSTRAP=1 (xtask sets it; so can users).
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single-threaded here.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let build = |features: &'static [&'static str]| {
        let package = aya_build::Package {
            name: "guard-ebpf",
            root_dir: root.as_str(),
            features,
            ..Default::default()
        };
        aya_build::build_ebpf([package], Toolchain::Custom("stable"))
    };
    // Two builds of one crate (guard-ebpf/src/each.rs): the compat one, for kernels
    // without `bpf_loop`, first, set aside under its own name; then the default one.
    // Each is cached by cargo under its features, so a rebuild only relinks.
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    build(&["compat"])?;
    std::fs::rename(out.join("guard-ebpf"), out.join("guard-ebpf-compat"))
        .context("set the compat build aside")?;
    build(&[])
}
