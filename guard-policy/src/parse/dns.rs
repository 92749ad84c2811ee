//! `[dns]`: sessions' DNS through guard's resolver, the names it answers, and what
//! a query for any other name gets (docs/policy.md, "DNS").

use super::{Checker, Value, code};
use crate::model::{Action, Dns, Kind, Policy};

const DNS_KEYS: &[&str] = &["resolver", "allow", "unknown", "upstream"];

/// Why `text` is not a name `[dns] allow` accepts; the name as stored otherwise
/// (lower case, no trailing dot).
pub(super) fn dns_name(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let labels = name.strip_prefix("*.").unwrap_or(&name);
    if labels.is_empty() {
        return Err("a name needs at least one label".to_owned());
    }
    if name.len() > 253 {
        return Err(format!("{} characters: a name has 253 at most", name.len()));
    }
    for label in labels.split('.') {
        if label.is_empty() {
            return Err("an empty label (two dots in a row)".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("the label {label:?} is longer than 63 characters"));
        }
        if label.contains('*') {
            return Err(
                "`*` stands only as the first label (`*.example.com`: every name below \
                 example.com)"
                    .to_owned(),
            );
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("{c:?} is not a letter, digit, `-` or `_`"));
        }
    }
    Ok(name)
}

impl Checker<'_> {
    /// `[dns]`; returns `unknown` as given (`Some(None)`: `"allow"`), to default
    /// once the rules are read.
    pub(super) fn dns(&mut self, value: &Value<'_>, dns: &mut Dns) -> Option<Option<Action>> {
        let table = self.table("dns", value)?;
        let mut unknown = None;
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "resolver" => {
                    if let Some(on) = self.boolean(name, value) {
                        dns.resolver = on;
                    }
                }
                "allow" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    dns.allow.clear();
                    for (text, at) in list.items {
                        match dns_name(text) {
                            Ok(n) => dns.allow.push(n),
                            Err(why) => self.error(
                                code::INVALID,
                                at,
                                format!("[dns] allow: bad name {text:?}: {why}"),
                            ),
                        }
                    }
                }
                "unknown" => {
                    let actions = [Action::Log, Action::Alert, Action::Deny, Action::Kill];
                    if let Some(action) = self.allow_or_action(("dns", name), value, &actions) {
                        unknown = Some(action);
                    }
                }
                "upstream" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    dns.upstream.clear();
                    for (text, at) in list.items {
                        match upstream(text) {
                            Ok(addr) => dns.upstream.push(addr),
                            Err(why) => self.error(
                                code::BAD_DEST,
                                at,
                                format!("[dns] upstream: bad server {text:?}: {why}"),
                            ),
                        }
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [dns]", DNS_KEYS),
            }
        }
        unknown
    }

    /// Settles `[dns] unknown` (given, or by the network rules) and appends its
    /// rule, `dns.names`.
    pub(super) fn dns_rule(
        &mut self,
        policy: &mut Policy,
        at: Option<usize>,
        given: Option<Option<Action>>,
    ) {
        let allowlist = policy.rules.iter().any(|r| {
            matches!(&r.kind, Kind::Network { allow, .. } if !allow.is_empty())
                && matches!(r.action, Action::Deny | Action::Kill)
        });
        policy.dns.unknown = given.unwrap_or(allowlist.then_some(Action::Deny));
        let Some(action) = policy.dns.unknown else {
            return;
        };
        let made = super::SettingRule {
            id: Dns::RULE,
            setting: "[dns] unknown",
            description: "[dns] unknown: a name neither [dns] allow nor the network allowlists name",
            kind: Kind::Dns,
            action,
            at: at.unwrap_or(0),
        };
        self.setting_rule(policy, made);
    }
}

/// `host:port` or `host` (port 53) of an upstream server: an address, not a name
/// (resolving the resolver would need a resolver).
fn upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| {
            "an address, with a port if not 53 (`10.0.0.2`, `127.0.0.1:5353`, \
             `[fd00::53]:53`)"
                .to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::dns_name;

    #[test]
    fn names_are_stored_in_lower_case_without_the_root_dot() {
        assert_eq!(dns_name("API.OpenAI.com."), Ok("api.openai.com".to_owned()));
        assert_eq!(dns_name("*.github.com"), Ok("*.github.com".to_owned()));
        assert_eq!(
            dns_name("_dmarc.example.com"),
            Ok("_dmarc.example.com".to_owned())
        );
        for bad in [
            "",
            "*.",
            "a..b",
            "a.*.b",
            "git*hub.com",
            "exa mple.com",
            "*",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(dns_name(&format!("{}.com", "a".repeat(64))).is_err());
    }
}
