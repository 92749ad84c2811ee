//! Connects and sends: the destination's rules and the tainted processes' allowlist.

use super::*;

/// The lookup key of a destination in the rule set of `generation`.
#[inline(always)]
pub(super) fn net_key(generation: u8, family: u16, addr: &[u8; 16]) -> Key<NetData> {
    let mut data: NetData = [0; 18];
    data[0] = generation;
    let mapped =
        family == AF_INET6 && addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff;
    let bits = if family == AF_INET || mapped {
        data[1] = AF_INET as u8;
        let at = if mapped { 12 } else { 0 };
        data[2..6].copy_from_slice(&addr[at..at + 4]);
        (2 + 4) * 8
    } else {
        data[1] = AF_INET6 as u8;
        data[2..18].copy_from_slice(addr);
        (2 + 16) * 8
    };
    Key::new(bits, data)
}

/// Destination check for a connect or send of a tainted process, after the
/// policy's own network rules let it through: `Some(rule field)` means refuse (off
/// the `[taint]` allowlist, when the policy denies tainted egress).
#[inline(always)]
pub(crate) fn on_tainted_net(family: u16, addr: &[u8; 16], port: u16) -> Option<u16> {
    let cfg = config();
    let r = TAINT_NET.get(net_key(cfg.generation as u8, family, addr))?;
    if r.flags & rule_flags::ALLOW != 0 && (r.ports == [0; 8] || r.ports.contains(&port)) {
        return None;
    }
    Some(((r.rule + 1) & enforced::RULE_MASK) | enforced::DENIED)
}

/// Destination check for a connect or send. `Some(rule field)` means refuse.
#[inline(always)]
pub(crate) fn on_net(family: u16, addr: &[u8; 16], port: u16, is_root: u32) -> Option<u16> {
    let cfg = config();
    if let Some(r) = NET_RULES.get(net_key(cfg.generation as u8, family, addr)) {
        let any_port = r.ports == [0; 8];
        if (any_port || r.ports.contains(&port)) && scope_ok(r.flags, r.access, is_root) {
            if r.flags & rule_flags::DENY != 0 {
                return Some(((r.rule + 1) & enforced::RULE_MASK) | enforced::DENIED);
            }
            if r.flags & rule_flags::ALLOW != 0 {
                return None;
            }
        }
    }
    if cfg.net_default_deny != 0
        && scope_ok(
            cfg.net_default_flags as u8,
            (cfg.net_default_flags >> 8) as u8,
            is_root,
        )
    {
        return Some((cfg.net_default_deny as u16 & enforced::RULE_MASK) | enforced::DENIED);
    }
    None
}
