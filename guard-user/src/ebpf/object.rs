//! Which build of guard-ebpf this kernel gets (guard-ebpf/src/each.rs): the default
//! build where the kernel has `bpf_loop` (and `bpf_task_pt_regs`, which came before
//! it), the compat build (bounded loops over global functions, an open's arguments
//! noted at its entry) where it does not: Linux 5.10-5.16 without a backport.

use aya::Btf;
use aya_obj::btf::BtfKind;
use serde::Serialize;

/// The objects built by guard-user/build.rs from guard-ebpf.
static DEFAULT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));
static COMPAT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf-compat"));

/// A build of guard-ebpf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Build {
    /// Loops as `bpf_loop` callbacks (Linux 5.17, or a backport).
    Default,
    /// Loops as chunks of global functions (Linux 5.6) in bounded loops (5.3).
    Compat,
}

/// `guard daemon --ebpf-build`: which build to load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// The default build where the kernel has `bpf_loop`, else the compat build.
    #[default]
    Auto,
    /// The default build, whatever the kernel (it refuses it without `bpf_loop`).
    Default,
    /// The compat build, whatever the kernel (to try it on a newer one).
    Compat,
}

impl Build {
    /// The build `choice` picks on the kernel whose BTF is `btf` (none read: the
    /// default build, whose loading then says what is missing).
    pub fn choose(choice: Choice, btf: Option<&Btf>) -> Self {
        match choice {
            Choice::Default => Self::Default,
            Choice::Compat => Self::Compat,
            Choice::Auto if btf.is_some_and(|btf| !has_default_helpers(btf)) => Self::Compat,
            Choice::Auto => Self::Default,
        }
    }

    /// The build's object file.
    pub fn object(self) -> &'static [u8] {
        match self {
            Self::Default => DEFAULT,
            Self::Compat => COMPAT,
        }
    }

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Whether the kernel has the helpers only the default build calls: its BTF then
/// has their functions, backports included — `bpf_loop` (Linux 5.17,
/// kernel/bpf/bpf_iter.c) and `bpf_task_pt_regs` (5.15, kernel/trace/bpf_trace.c:
/// an open's arguments read at its exit).
fn has_default_helpers(btf: &Btf) -> bool {
    ["bpf_loop", "bpf_task_pt_regs"]
        .iter()
        .all(|f| btf.id_by_type_name_kind(f, BtfKind::Func).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_bpf_loop_gets_the_compat_build() {
        // A kernel's BTF without the helper's function.
        let without = Btf::new();
        assert_eq!(Build::choose(Choice::Auto, Some(&without)), Build::Compat);
        assert_eq!(
            Build::choose(Choice::Default, Some(&without)),
            Build::Default
        );
        assert_eq!(Build::choose(Choice::Auto, None), Build::Default);
    }

    /// This machine's kernel (6.18) has `bpf_loop`; where its BTF can be read, auto
    /// picks the default build.
    #[test]
    fn this_kernel_gets_the_default_build() {
        let Ok(btf) = Btf::from_sys_fs() else {
            panic!("no /sys/kernel/btf/vmlinux: guard's kernels all have it");
        };
        assert!(has_default_helpers(&btf));
        assert_eq!(Build::choose(Choice::Auto, Some(&btf)), Build::Default);
        assert_eq!(Build::choose(Choice::Compat, Some(&btf)), Build::Compat);
    }

    /// Both builds have the same programs but those only the compat build attaches
    /// (table.rs `compat_only`).
    #[test]
    fn both_builds_are_embedded_and_differ() {
        use std::collections::BTreeSet;
        let names = |build: Build| -> BTreeSet<String> {
            aya_obj::Object::parse(build.object())
                .expect("parse the object")
                .programs
                .into_keys()
                .collect()
        };
        let compat_only: BTreeSet<String> = super::super::table::TABLE
            .iter()
            .filter(|e| e.compat_only)
            .map(|e| e.program.to_owned())
            .collect();
        let compat = names(Build::Compat);
        assert!(compat_only.is_subset(&compat));
        assert_eq!(
            names(Build::Default),
            &compat - &compat_only,
            "the default build has the compat build's programs but the compat-only ones"
        );
        assert_ne!(Build::Default.object(), Build::Compat.object());
    }
}
