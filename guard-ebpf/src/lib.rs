#![no_std]
//! Library face of guard-ebpf: empty. The programs are the `guard-ebpf` binary,
//! built for the bpf target by guard-user/build.rs; this target only lets cargo
//! track the crate as a build dependency of guard.
