//! Compiles the CO-RE shim (kernel struct reads) to LLVM bitcode when building for
//! the bpf target; bpf-linker links it into the programs and aya relocates its
//! field accesses against the running kernel's BTF at load time.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let shim = "src/core_read/shim.c";
    println!("cargo:rerun-if-changed={shim}");
    println!("cargo:rerun-if-env-changed=GUARD_CLANG");
    // bpf-linker is an undeclared build dependency: rebuild when it changes.
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("shim.o");
    println!("cargo:rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    let arch =
        env::var("CARGO_CFG_BPF_TARGET_ARCH").unwrap_or_else(|_| env::consts::ARCH.to_owned());
    let clang = env::var("GUARD_CLANG").unwrap_or_else(|_| "clang-19".to_owned());
    let multiarch = format!("/usr/include/{}-linux-gnu", env::consts::ARCH);
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-emit-llvm",
            "-target",
            "bpf",
            "-Wall",
            "-Werror",
        ])
        .arg(format!("-I{multiarch}"))
        // The compat build's loops (src/each.rs).
        .args(
            env::var_os("CARGO_FEATURE_COMPAT")
                .is_some()
                .then_some("-DGUARD_COMPAT"),
        )
        // The registers a system call's arguments are in (shim.c
        // `guard_syscall_args`): the architecture guard-user is built for (aya-build
        // passes it as `bpf_target_arch`), else this machine's.
        .arg(format!("-DGUARD_ARCH_{}", arch.to_ascii_uppercase()))
        .args(["-c", shim, "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (run `cargo xtask setup`): {e}"));
    assert!(status.success(), "{clang} failed to compile {shim}");
    // `rustc-link-lib=link-arg=` leaves the accessors undefined; a plain link-arg works.
    println!("cargo:rustc-link-arg={}", obj.display());
    // By default bpf-linker has LLVM expand memcpy "in order" (for the JITs' pattern
    // matching), which also turns every memset, such as a few zeroed fields merged
    // into one, into a call to compiler_builtins' byte loop: the verifier walks that
    // loop a byte at a time at every call, on every path to it (over 50,000 of the
    // open exit's verified instructions). Plain expansion writes the stores inline.
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
