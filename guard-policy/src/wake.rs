//! Which exec records wake the daemon at once: those of the execs whose kill user
//! space decides (argv rules, program globs, digests, downloads). Any other exec's
//! record waits for the daemon's 10 ms drain: a forced wake-up is an interrupt on
//! the exec's CPU and a read of one record, measured at 14 % of a fork and exec of
//! `/bin/true` on this project's VM.

use std::collections::BTreeSet;

use guard_common::{
    AgentName, agent_key,
    rules::{EXEC_WAKE_ALL, EXEC_WAKE_MAX, EXEC_WAKE_NAMED},
};

use crate::model::{Kind, Policy};

/// `Config::exec_wakeup` and the `EXEC_WAKE` names for the rules `partial` (those
/// the kernel does not decide whole), when the kernel holds some execs for the
/// daemon (`held`: digests or downloads). A rule's program named by a path or a
/// name wakes by that name (as `comm` has it after the exec); a glob of programs,
/// or an argv rule on any program, wakes every exec.
pub(crate) fn exec_wake(policy: &Policy, partial: &[usize], held: bool) -> (u32, Vec<AgentName>) {
    let mut names = BTreeSet::new();
    let mut every = false;
    for &i in partial {
        let Kind::Exec {
            exe,
            digests,
            argv_contains,
            argv_regex,
        } = &policy.rules[i].kind
        else {
            continue;
        };
        if exe.is_empty() {
            // Any program: by its arguments; a rule of digests alone holds its execs.
            every |= !argv_contains.is_empty() || argv_regex.is_some() || digests.is_empty();
        }
        for program in exe {
            let name = program.rsplit('/').next().unwrap_or(program);
            if name.is_empty() || name.contains(['*', '?', '[', '{']) {
                every = true;
            } else {
                names.insert(agent_key(name.as_bytes()));
            }
        }
    }
    if every || names.len() > EXEC_WAKE_MAX as usize {
        (EXEC_WAKE_ALL, Vec::new())
    } else if held || !names.is_empty() {
        (EXEC_WAKE_NAMED, names.into_iter().collect())
    } else {
        (0, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Digest, Pos, Rule, Scope};

    fn exec(exe: &[&str], argv_regex: Option<&str>, digests: Vec<Digest>) -> Kind {
        Kind::Exec {
            exe: exe.iter().map(|e| (*e).to_owned()).collect(),
            digests,
            argv_contains: vec![],
            argv_regex: argv_regex.map(str::to_owned),
        }
    }

    fn text(names: &[AgentName]) -> Vec<String> {
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n).trim_end_matches('\0').to_owned())
            .collect()
    }

    fn wake(kinds: Vec<Kind>, held: bool) -> (u32, Vec<String>) {
        let (mut policy, _) = crate::parse::parse("t", "mode = \"enforce\"\n").expect("valid");
        policy.rules = kinds
            .into_iter()
            .map(|kind| Rule {
                id: "r".into(),
                description: None,
                kind,
                action: Action::Kill,
                scope: Scope::All,
                secret: false,
                fallback: None,
                pos: Pos::default(),
            })
            .collect();
        let partial: Vec<usize> = (0..policy.rules.len()).collect();
        let (how, names) = exec_wake(&policy, &partial, held);
        (how, text(&names))
    }

    #[test]
    fn argv_rules_wake_by_their_programs_names() {
        let (how, names) = wake(
            vec![
                exec(&["sh", "/usr/bin/git"], Some("x"), vec![]),
                exec(&["a-program-name-longer-than-comm"], Some("x"), vec![]),
            ],
            false,
        );
        assert_eq!(how, EXEC_WAKE_NAMED);
        // As `comm` has them: the file's name, cut to 15 bytes.
        assert_eq!(names, ["a-program-name-", "git", "sh"]);
    }

    #[test]
    fn a_glob_of_programs_or_any_program_wakes_every_exec() {
        for kind in [
            exec(&["mkfs.*"], None, vec![]),
            exec(&["/opt/**"], None, vec![]),
            exec(&[], Some("curl"), vec![]),
        ] {
            assert_eq!(wake(vec![kind], false), (EXEC_WAKE_ALL, vec![]));
        }
    }

    #[test]
    fn held_execs_wake_with_no_name() {
        let digest = Digest {
            sha256: "0".repeat(64),
            size: 10,
        };
        // A rule of digests alone: its execs are held (so `held`), not every exec woken.
        assert_eq!(
            wake(vec![exec(&[], None, vec![digest])], true),
            (EXEC_WAKE_NAMED, vec![])
        );
        assert_eq!(wake(vec![], true), (EXEC_WAKE_NAMED, vec![]));
        assert_eq!(wake(vec![], false), (0, vec![]));
    }

    #[test]
    fn the_workstation_policy_wakes_for_shells_and_its_argv_rules_programs_only() {
        let text_of = crate::builtin::get("workstation").expect("built in");
        let (policy, _) = crate::parse::parse("workstation", text_of).expect("valid");
        let t = crate::tables::compile(&policy, &[], &crate::matcher::Hosts::default(), false);
        assert_eq!(t.config.exec_wakeup, EXEC_WAKE_NAMED);
        let names = text(&t.exec_wake);
        for program in ["sh", "bash", "dash", "git", "rm", "chmod", "docker"] {
            assert!(names.iter().any(|n| n == program), "{program}: {names:?}");
        }
        // A compiler, a test runner: their records wait for the drain beat.
        for program in ["true", "cc", "cargo", "node", "python3"] {
            assert!(!names.iter().any(|n| n == program), "{program}: {names:?}");
        }
    }
}
