//! What `guard top` keeps of the event stream: each event reduced to what the feed
//! shows, and the destinations the destinations view counts.

use std::collections::HashMap;

use guard_common::line::{self, Access, EventLine, FlowReason};

/// A policy decision carried by an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violation {
    pub rule: String,
    pub action: Option<String>,
    pub outcome: Option<String>,
}

/// One event of the stream, reduced to what the feed shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    /// `HH:MM:SS.mmm` (UTC, as in the audit log).
    pub time: String,
    pub session: Option<String>,
    pub pid: u32,
    pub comm: String,
    /// What happened, for people.
    pub what: String,
    pub violation: Option<Violation>,
    /// A connect, send or flow: its destination, for the destinations view.
    pub net: Option<NetUse>,
    /// A read of one of the system's own files (libraries, locales, `/proc`…) that
    /// broke no rule: most of what any program opens, behind `s` in the feed.
    pub system: bool,
}

/// What a connect, send or flow record says of its destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetUse {
    /// `addr:port/proto` (`[addr]:port/proto` for IPv6).
    pub dest: String,
    /// The name guard knows for the address.
    pub host: Option<String>,
    pub kind: NetKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetKind {
    #[default]
    Connect,
    Send,
    /// A flow record: the socket's totals so far (`closed` at its last record).
    Flow {
        id: String,
        out: u64,
        inb: u64,
        closed: bool,
    },
}

impl Event {
    /// One line of the subscription.
    pub fn from_line(ev: &EventLine) -> Self {
        Self {
            kind: ev.detail.kind().to_owned(),
            time: ev.ts.get(11..23).unwrap_or("").to_owned(),
            session: ev.session.clone(),
            pid: ev.pid().unwrap_or(0),
            comm: ev.comm().unwrap_or_default().to_owned(),
            what: ev.what(),
            violation: ev.violation.as_ref().map(|v| Violation {
                rule: v.rule.clone(),
                action: Some(v.action.as_str().to_owned()),
                outcome: Some(v.outcome.as_str().to_owned()),
            }),
            net: NetUse::of(ev),
            system: ev.violation.is_none()
                && matches!(&ev.detail, line::EventDetail::Open { path, access, .. }
                    if crate::report::is_system_path(path)
                        && access.iter().all(|a| *a == Access::Read)),
        }
    }

    /// The text the `/` filter searches.
    pub(super) fn matches_text(&self, needle_lower: &str) -> bool {
        if needle_lower.is_empty() {
            return true;
        }
        let hit = |s: &str| s.to_lowercase().contains(needle_lower);
        hit(&self.what)
            || hit(&self.comm)
            || hit(&self.kind)
            || self.pid.to_string().contains(needle_lower)
            || self.violation.as_ref().is_some_and(|v| {
                hit(&v.rule)
                    || v.action.as_deref().is_some_and(hit)
                    || v.outcome.as_deref().is_some_and(hit)
            })
    }
}

impl NetUse {
    pub(super) fn of(ev: &EventLine) -> Option<Self> {
        use line::EventDetail;
        let dest = |to: &line::Address| {
            let (addr, port, proto) = (&to.addr, to.port, &to.proto);
            if addr.contains(':') {
                format!("[{addr}]:{port}/{proto}")
            } else {
                format!("{addr}:{port}/{proto}")
            }
        };
        let (dest, kind) = match &ev.detail {
            EventDetail::Connect { to, .. } => (dest(to), NetKind::Connect),
            EventDetail::Send { to, .. } => (dest(to), NetKind::Send),
            EventDetail::Flow {
                to,
                bytes_out,
                bytes_in,
                flow_id,
                reason,
                ..
            } => (
                dest(to),
                NetKind::Flow {
                    id: flow_id.clone(),
                    out: *bytes_out,
                    inb: *bytes_in,
                    closed: *reason != FlowReason::Periodic,
                },
            ),
            _ => return None,
        };
        Some(Self {
            dest,
            host: ev.host.clone(),
            kind,
        })
    }
}

/// One destination of the destinations view (`d`): a session's (or every
/// session's) connects, sends and bytes to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    pub dest: String,
    pub host: Option<String>,
    pub connects: u64,
    pub sends: u64,
    pub out: u64,
    pub inb: u64,
}

/// Most destinations one buffer keeps; past it they are counted.
pub const DEST_CAP: usize = 1_000;

/// Destinations folded from connect, send and flow records: a flow's records
/// carry its totals so far, so each replaces the flow's previous counts.
#[derive(Debug, Default)]
pub(super) struct Destinations {
    by_dest: HashMap<String, Destination>,
    /// Open flows' last counts.
    flows: crate::event::flows::FlowDeltas<String>,
    pub(super) omitted: u64,
}

impl Destinations {
    pub(super) fn add(&mut self, net: &NetUse) {
        if !self.by_dest.contains_key(&net.dest) {
            if self.by_dest.len() >= DEST_CAP {
                self.omitted += 1;
                return;
            }
            self.by_dest.insert(
                net.dest.clone(),
                Destination {
                    dest: net.dest.clone(),
                    ..Destination::default()
                },
            );
        }
        let Some(d) = self.by_dest.get_mut(&net.dest) else {
            return;
        };
        if d.host.is_none() {
            d.host.clone_from(&net.host);
        }
        match &net.kind {
            NetKind::Connect => d.connects += 1,
            NetKind::Send => d.sends += 1,
            NetKind::Flow {
                id,
                out,
                inb,
                closed,
            } => {
                let (d_out, d_in) = self.flows.add_totals(id.clone(), (*out, *inb), *closed);
                d.out += d_out;
                d.inb += d_in;
            }
        }
    }

    /// Most bytes out first.
    pub(super) fn sorted(&self) -> Vec<Destination> {
        let mut list: Vec<Destination> = self.by_dest.values().cloned().collect();
        list.sort_by(|a, b| {
            b.out
                .cmp(&a.out)
                .then(b.inb.cmp(&a.inb))
                .then(a.dest.cmp(&b.dest))
        });
        list
    }
}
