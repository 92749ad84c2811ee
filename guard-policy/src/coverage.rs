//! What the built-in policies answer, technique by technique (guard-policy/data/
//! coverage.toml), rendered as docs/policy.md's table "What the built-ins cover".
//! The tests hold the data, the table and the built-ins together: every rule of a
//! built-in answers a technique, every rule the data names is a built-in's, and
//! the table in the docs is the data's.

use serde::Deserialize;

/// One technique and the rules that answer it.
#[derive(Debug, Deserialize)]
pub struct Technique {
    /// A MITRE ATT&CK id (`T1552.004`), or a word where none fits.
    pub id: String,
    pub name: String,
    /// The built-ins' rules that answer it; none: left open (`how` says why).
    pub rules: Vec<String>,
    pub how: String,
}

#[derive(Deserialize)]
struct File {
    technique: Vec<Technique>,
}

/// The data, as shipped.
pub fn techniques() -> Result<Vec<Technique>, toml::de::Error> {
    toml::from_str::<File>(include_str!("../data/coverage.toml")).map(|f| f.technique)
}

/// Whether `id` is an ATT&CK technique id (`T1234` or `T1234.001`).
fn is_attack(id: &str) -> bool {
    let Some(rest) = id.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = rest.split_once('.').unwrap_or((rest, ""));
    main.len() == 4
        && main.bytes().all(|b| b.is_ascii_digit())
        && (sub.is_empty() || (sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())))
}

/// The Markdown table: technique (linked to ATT&CK), the rules, what they do.
pub fn table(techniques: &[Technique]) -> String {
    let mut out =
        String::from("| technique | rules | what the kernel or guard does |\n|---|---|---|\n");
    for t in techniques {
        let technique = if is_attack(&t.id) {
            format!(
                "[{}](https://attack.mitre.org/techniques/{}/) {}",
                t.id,
                t.id.replace('.', "/"),
                t.name
            )
        } else {
            t.name.clone()
        };
        let rules = if t.rules.is_empty() {
            "**none**".to_owned()
        } else {
            t.rules
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!("| {technique} | {rules} | {} |\n", t.how));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{builtin, parse};

    /// Every id a built-in policy reports violations under: its rules (those
    /// `[sessions]`, `[taint]`, `[dns]` and `[delegation]` make among them), its
    /// anomalies, `[limits]`, and the `[sessions]` settings judged in user space.
    fn ids(name: &str) -> BTreeSet<String> {
        let text = builtin::get(name).expect("a built-in");
        let (policy, _) = parse::parse(name, text).expect("the built-in parses");
        let mut ids: BTreeSet<String> = policy.rules.iter().map(|r| r.id.clone()).collect();
        ids.extend(policy.anomalies.iter().map(|a| a.id.clone()));
        ids.insert(crate::judge::LIMITS.to_owned());
        if policy.sessions.run_downloaded.is_some() {
            ids.insert(crate::judge::RUN_DOWNLOADED.to_owned());
        }
        if policy.sessions.unsandboxed_tools.is_some() {
            ids.insert(crate::judge::UNSANDBOXED.to_owned());
        }
        ids
    }

    #[test]
    fn every_rule_of_the_built_ins_answers_a_technique_and_every_named_rule_is_theirs() {
        let techniques = techniques().expect("coverage.toml parses");
        let named: BTreeSet<&str> = techniques
            .iter()
            .flat_map(|t| t.rules.iter().map(String::as_str))
            .collect();
        let mut all = BTreeSet::new();
        for name in builtin::NAMES {
            let ids = ids(name);
            let unanswered: Vec<&String> = ids
                .iter()
                .filter(|id| !named.contains(id.as_str()))
                .collect();
            assert!(
                unanswered.is_empty(),
                "{name}: rules no technique of guard-policy/data/coverage.toml names: {unanswered:?}"
            );
            all.extend(ids);
        }
        let strangers: Vec<&&str> = named.iter().filter(|r| !all.contains(**r)).collect();
        assert!(
            strangers.is_empty(),
            "coverage.toml names rules no built-in has: {strangers:?}"
        );
        let mut seen = BTreeSet::new();
        for t in &techniques {
            assert!(seen.insert(&t.id), "technique {} twice", t.id);
            assert!(!t.how.is_empty() && !t.name.is_empty(), "{}", t.id);
            assert!(
                is_attack(&t.id) || !t.id.starts_with('T'),
                "{} looks like an ATT&CK id but is not one",
                t.id
            );
        }
    }

    #[test]
    fn the_docs_table_is_the_data() {
        let docs = include_str!("../../docs/policy.md");
        let (start, end) = ("<!-- coverage:start -->\n", "<!-- coverage:end -->");
        let from = docs
            .find(start)
            .expect("docs/policy.md has the coverage markers")
            + start.len();
        let to = docs[from..].find(end).expect("the end marker") + from;
        let table = table(&techniques().expect("coverage.toml parses"));
        assert!(
            docs[from..to] == table,
            "docs/policy.md's coverage table is not guard-policy/data/coverage.toml's; \
             put this between the markers:\n{table}"
        );
    }

    #[test]
    fn attack_ids_are_told_from_words() {
        assert!(is_attack("T1552"));
        assert!(is_attack("T1552.004"));
        assert!(!is_attack("T155"));
        assert!(!is_attack("T1552.4"));
        assert!(!is_attack("routes"));
    }
}
