//! Which names a session may resolve: one decision, made the same way by guard's
//! resolver before it answers (`crate::dns`) and by the judge on the query the
//! kernel reports (`matcher`), so that what the resolver refused is what the
//! audit log calls a violation.
//!
//! A name is allowed when `[dns] allow` names it (`*.example.com`: every name below
//! example.com), or a network rule's allowlist (`allow`) or `[taint] allow` names
//! it as a host. A tainted process (it read a secret) may resolve only the names
//! `[taint] allow` names where `[taint] egress` denies.

use std::collections::{HashMap, HashSet};

use super::model::{Action, Check, Dest, Host, Kind, Mode, Policy};

/// Allowed names: exact names and the domains whose every subdomain is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSet {
    exact: HashSet<String>,
    /// `.example.com` for `*.example.com`.
    below: Vec<String>,
}

impl NameSet {
    fn add(&mut self, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match name.strip_prefix('*') {
            Some(suffix) => self.below.push(suffix.to_owned()),
            None => {
                self.exact.insert(name);
            }
        }
    }

    fn hosts(&mut self, dests: &[Dest]) {
        for d in dests {
            if let Host::Name(n) = &d.host {
                self.add(n);
            }
        }
    }

    /// Whether `name` (any case, with or without the root dot) is in the set.
    pub fn allows(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.exact.contains(&name) || self.below.iter().any(|s| name.ends_with(s.as_str()))
    }

    /// Whether `name` is an allowed name with a search domain appended
    /// (`api.openai.com.default.svc.cluster.local`): a resolver library tries such
    /// names before the name itself. They are refused (never forwarded) without a
    /// violation: nothing the session chose is in them.
    pub fn is_search_of_allowed(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        // Each proper prefix that ends at a label boundary.
        while let Some(i) = rest.rfind('.') {
            rest = &rest[..i];
            if self.allows(rest) {
                return true;
            }
        }
        false
    }
}

/// What guard's resolver does with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer it: forward it to the server.
    Forward,
    /// Answer NXDOMAIN without forwarding: the name is not allowed (`rule`
    /// names the rule it breaks), or it is an allowed name with a search domain
    /// (`rule` is `None`: not a violation).
    Refuse { rule: Option<String> },
}

/// The names policy of one loaded policy.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsPolicy {
    allowed: NameSet,
    /// `[dns] unknown`.
    unknown: Option<Action>,
    /// `[taint] allow`'s names, where `[taint] egress` denies.
    taint: Option<NameSet>,
    /// A `dns-entropy` anomaly rule that kills: its thresholds, to refuse such a
    /// name before it leaves (the anomaly is still reported by the detector).
    data: Option<(usize, f64, usize)>,
    observe: bool,
}

impl DnsPolicy {
    pub fn new(policy: &Policy) -> Self {
        let mut allowed = NameSet::default();
        for n in &policy.dns.allow {
            allowed.add(n);
        }
        for rule in &policy.rules {
            match &rule.kind {
                Kind::Network { allow, .. } => allowed.hosts(allow),
                Kind::TaintEgress { allow } => allowed.hosts(allow),
                _ => {}
            }
        }
        let taint = (policy.taint.egress == Some(Action::Deny)).then(|| {
            let mut t = NameSet::default();
            t.hosts(&policy.taint.allow);
            t
        });
        let data = policy.anomalies.iter().find_map(|a| match a.check {
            Check::DnsEntropy {
                label_length,
                entropy,
                name_length,
            } if matches!(a.action, Action::Kill | Action::Deny) => {
                Some((label_length, entropy, name_length))
            }
            _ => None,
        });
        Self {
            allowed,
            unknown: policy.dns.unknown,
            taint,
            data,
            observe: policy.mode == Mode::Observe,
        }
    }

    /// Whether a query for `name` breaks `dns.names` (`[dns] unknown`): a name
    /// the policy does not allow (an allowed name with a search domain is not one).
    pub fn unknown(&self, name: &str) -> bool {
        self.unknown.is_some()
            && !self.allowed.allows(name)
            && !self.allowed.is_search_of_allowed(name)
    }

    /// Whether a tainted process's query for `name` breaks `taint.egress`: off
    /// `[taint] allow`, where `[taint] egress` denies.
    pub fn off_taint(&self, name: &str, tainted: bool) -> bool {
        tainted && self.taint.as_ref().is_some_and(|t| !t.allows(name))
    }

    /// The first rule a query for `name` breaks, as the judge reports it.
    pub fn breaks(&self, name: &str, tainted: bool) -> Option<&'static str> {
        if self.off_taint(name, tainted) {
            Some(super::model::Taint::RULE)
        } else if self.unknown(name) {
            Some(super::model::Dns::RULE)
        } else {
            None
        }
    }

    /// What guard's resolver does with a query for `name` from a process that is
    /// (or is not) tainted.
    pub fn decide(&self, name: &str, tainted: bool) -> Decision {
        if self.observe {
            return Decision::Forward;
        }
        if tainted
            && let Some(t) = &self.taint
            && !t.allows(name)
        {
            return Decision::Refuse {
                rule: Some(super::model::Taint::RULE.to_owned()),
            };
        }
        let refusing = matches!(self.unknown, Some(Action::Deny | Action::Kill));
        if refusing && !self.allowed.allows(name) {
            let rule = (!self.allowed.is_search_of_allowed(name))
                .then(|| super::model::Dns::RULE.to_owned());
            return Decision::Refuse { rule };
        }
        if let Some((label, entropy, length)) = self.data
            && suspicious_name(name, label, entropy, length).is_some()
        {
            return Decision::Refuse { rule: None };
        }
        Decision::Forward
    }
}

/// Shannon entropy of `s` in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c.to_ascii_lowercase()).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a queried name looks like tunnelling: the reason, if it does.
pub fn suspicious_name(
    name: &str,
    label_length: usize,
    min_entropy: f64,
    name_length: usize,
) -> Option<String> {
    let name = name.trim_end_matches('.');
    if name.len() >= name_length {
        return Some(format!(
            "name of {} characters (limit {name_length})",
            name.len()
        ));
    }
    let longest = name.split('.').max_by_key(|l| l.len())?;
    if longest.len() >= label_length {
        let e = entropy(longest);
        if e >= min_entropy {
            return Some(format!(
                "label of {} characters with entropy {e:.2} bits/char (limits {label_length}, \
                 {min_entropy:.2})",
                longest.len()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{builtin, parse};

    fn of(text: &str) -> DnsPolicy {
        let (p, _) = parse::parse("t", text).expect("valid");
        DnsPolicy::new(&p)
    }

    #[test]
    fn names_of_the_allowlists_and_dns_allow_are_answered_the_rest_refused() {
        let p = of(r#"
[dns]
allow = ["*.github.com", "Example.ORG."]

[[rule]]
id = "egress"
kind = "network"
allow = ["api.openai.com:443", "10.0.0.0/8"]
action = "deny"
"#);
        for ok in [
            "api.openai.com",
            "API.OpenAI.com.",
            "codeload.github.com",
            "a.b.github.com",
            "example.org",
        ] {
            assert_eq!(p.decide(ok, false), Decision::Forward, "{ok}");
            assert_eq!(p.breaks(ok, false), None, "{ok}");
        }
        for bad in [
            "github.com",
            "openai.com",
            "x.api.openai.com",
            "6578666c.evil.example",
        ] {
            assert_eq!(
                p.decide(bad, false),
                Decision::Refuse {
                    rule: Some("dns.names".into())
                },
                "{bad}"
            );
            assert_eq!(p.breaks(bad, false), Some("dns.names"), "{bad}");
        }
        // A search domain after an allowed name: refused, not a violation.
        let search = "api.openai.com.default.svc.cluster.local";
        assert_eq!(p.decide(search, false), Decision::Refuse { rule: None });
        assert_eq!(p.breaks(search, false), None);
    }

    #[test]
    fn without_an_allowlist_every_name_is_answered_unless_the_policy_says_so() {
        let p = of("");
        assert_eq!(p.decide("anything.example", false), Decision::Forward);
        assert_eq!(p.breaks("anything.example", false), None);
        let p = of("[dns]\nunknown = \"log\"\n");
        assert_eq!(p.decide("anything.example", false), Decision::Forward);
        assert_eq!(p.breaks("anything.example", false), Some("dns.names"));
        let p = of("[dns]\nunknown = \"deny\"\nallow = [\"ok.example\"]\n");
        assert_eq!(p.decide("ok.example", false), Decision::Forward);
        assert!(matches!(
            p.decide("no.example", false),
            Decision::Refuse { rule: Some(_) }
        ));
    }

    #[test]
    fn a_tainted_process_resolves_only_the_taint_allowlist() {
        let p = of(r#"
[taint]
egress = "deny"
allow = ["api.openai.com:443"]

[dns]
unknown = "log"
"#);
        assert_eq!(p.decide("api.openai.com", true), Decision::Forward);
        assert_eq!(
            p.decide("pastebin.example", true),
            Decision::Refuse {
                rule: Some("taint.egress".into())
            }
        );
        assert_eq!(p.decide("pastebin.example", false), Decision::Forward);
    }

    #[test]
    fn the_built_ins_refuse_in_ci_and_log_on_workstations() {
        let ci = DnsPolicy::new(
            &parse::parse("ci", builtin::get("ci").expect("ci"))
                .expect("valid")
                .0,
        );
        let ws = DnsPolicy::new(
            &parse::parse("workstation", builtin::get("workstation").expect("ws"))
                .expect("valid")
                .0,
        );
        let exfil = "3a2f2f6465762f7368.6d2f6b657973.t.example";
        assert!(matches!(
            ci.decide(exfil, false),
            Decision::Refuse { rule: Some(_) }
        ));
        assert_eq!(ws.decide(exfil, false), Decision::Forward);
        assert_eq!(ws.breaks(exfil, false), Some("dns.names"));
        for name in ["api.openai.com", "registry.npmjs.org", "pypi.org"] {
            assert_eq!(ci.decide(name, false), Decision::Forward, "{name}");
        }
    }
}
