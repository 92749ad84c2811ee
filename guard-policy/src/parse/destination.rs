//! Network destinations: `host[:port]`, addresses and CIDRs, `@resolvers`.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Dest, Host};

/// Parses a network destination: `host`, `host:port`, `ip`, `ip:port`, `cidr`,
/// `cidr:port`, `[v6]`, `[v6]:port`, `[v6cidr]:port`, a bare IPv6 address or CIDR,
/// `@resolvers`, `@resolvers:port`.
pub(super) fn dest(text: &str) -> Result<Dest, String> {
    let (host, port) = host_port(text)?;
    Ok(Dest {
        host,
        port,
        text: text.to_owned(),
    })
}

fn host_port(text: &str) -> Result<(Host, Option<u16>), String> {
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.chars().any(char::is_whitespace) {
        return Err("it has spaces".to_owned());
    }
    if let Some(alias) = text.strip_prefix('@') {
        let (name, port) = match alias.split_once(':') {
            Some((name, port)) => (name, Some(parse_port(port)?)),
            None => (alias, None),
        };
        return if name == "resolvers" {
            Ok((Host::Resolvers, port))
        } else {
            Err(format!(
                "unknown alias \"@{name}\" (the only one is @resolvers)"
            ))
        };
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err("`[` without `]`".to_owned());
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => return Err("expected `:PORT` after `]`".to_owned()),
            },
        };
        let net = parse_net(inner)?;
        if !matches!(net, IpNet::V6(_)) {
            return Err(format!(
                "brackets are for IPv6 addresses: write {inner}:PORT"
            ));
        }
        return Ok((Host::Net(net), port));
    }
    if text.matches(':').count() >= 2 {
        // A bare IPv6 address or CIDR: a port needs the bracketed form.
        return parse_net(text)
            .map(|net| (Host::Net(net), None))
            .map_err(|_| {
                "not an IPv6 address or CIDR (write [ADDRESS]:PORT for a port)".to_owned()
            });
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (text, None),
    };
    if host.contains('/') || host.parse::<IpAddr>().is_ok() {
        return Ok((Host::Net(parse_net(host)?), port));
    }
    Ok((Host::Name(host_name(host)?), port))
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| {
            "not a valid CIDR (an address, `/`, a prefix length up to 32 or 128)".to_owned()
        })?;
        if net.trunc() != net {
            return Err(format!(
                "host bits are set (did you mean \"{}\"?)",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        let addr: IpAddr = text
            .parse()
            .map_err(|_| "not a valid IP address".to_owned())?;
        Ok(IpNet::from(addr))
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("no port after `:`".to_owned());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port {text} is out of range (1..=65535)")),
    }
}

/// A DNS name, lowercased: labels of letters, digits and hyphens.
fn host_name(text: &str) -> Result<String, String> {
    if text.starts_with("*.") {
        return Err("wildcard names are not supported: list each host".to_owned());
    }
    let name = text.to_ascii_lowercase();
    if name.len() > 253 {
        return Err("a host name has at most 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in host name".to_owned());
        }
        if label.len() > 63 {
            return Err("a label of a host name has at most 63 characters".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("not a valid host name (letters, digits, hyphens and dots)".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of a host name cannot start or end with a hyphen".to_owned());
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IP address or host name".to_owned());
    }
    Ok(name)
}

/// Whether an allow list holds every IPv4 and IPv6 destination on every port.
pub(super) fn admits_everything(allow: &[Dest]) -> bool {
    let any = |v4: bool| {
        allow.iter().any(|d| {
            d.port.is_none()
                && matches!(d.host, Host::Net(net) if net.prefix_len() == 0 && matches!(net, IpNet::V4(_)) == v4)
        })
    };
    any(true) && any(false)
}
