//! The names each session's DNS answers gave addresses: later connects, sends and
//! flows of the session to an address are named by what the session asked for
//! (the question's name, not the CNAME chain's end). Per session, bounded, and
//! aware of the answers' TTLs.

use std::{collections::HashMap, net::IpAddr};

use super::{SessionId, dns::Dns};

/// Addresses remembered per session; past it the entry that expires first goes.
pub const MAX_PER_SESSION: usize = 4096;
/// Sessions remembered; past it the one whose latest answer is oldest goes.
pub const MAX_SESSIONS: usize = 1024;
/// Least time a name stays valid, whatever the TTL: applications and stub
/// resolvers keep answers a little past their TTL (Java 30 s, nscd, browsers).
pub const MIN_VALID_NS: i128 = 300 * 1_000_000_000;
/// Most time an answer stays valid.
pub const MAX_VALID_NS: i128 = 24 * 3600 * 1_000_000_000;
/// An answer repeated within this time (or its TTL, if longer) is not logged again.
const RELOG_NS: i128 = 60 * 1_000_000_000;

#[derive(Debug)]
struct Entry {
    name: String,
    /// Wall-clock ns of the answer.
    from: i128,
    /// Wall-clock ns until which the name holds.
    until: i128,
}

#[derive(Debug, Default)]
struct Session {
    by_addr: HashMap<IpAddr, Entry>,
    /// (name, type, answer data) logged → until when a repeat is not logged.
    logged: HashMap<(String, String, Vec<String>), i128>,
    latest: i128,
}

/// Names by session and address.
#[derive(Debug, Default)]
pub struct Names {
    sessions: HashMap<SessionId, Session>,
}

impl Names {
    /// Learns the addresses of an answer the session received at `ts_ns`; returns
    /// whether the answer is worth logging (not a repeat of one logged within its
    /// TTL, at least a minute).
    pub fn learn(&mut self, session: SessionId, dns: &Dns, ts_ns: i128) -> bool {
        if !self.sessions.contains_key(&session)
            && self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.latest)
                .map(|(id, _)| *id)
        {
            self.sessions.remove(&oldest);
        }
        let s = self.sessions.entry(session).or_default();
        s.latest = ts_ns;
        let min_ttl = dns.answers.iter().map(|a| a.ttl).min().unwrap_or(0);
        if let Some(name) = &dns.name {
            for a in &dns.answers {
                let Some(addr) = super::dns::answer_addr(a) else {
                    continue;
                };
                let valid = (i128::from(a.ttl) * 1_000_000_000).clamp(MIN_VALID_NS, MAX_VALID_NS);
                if s.by_addr.len() >= MAX_PER_SESSION
                    && !s.by_addr.contains_key(&addr)
                    && let Some(first) = s
                        .by_addr
                        .iter()
                        .min_by_key(|(_, e)| e.until)
                        .map(|(a, _)| *a)
                {
                    s.by_addr.remove(&first);
                }
                s.by_addr.insert(
                    addr,
                    Entry {
                        name: name.clone(),
                        from: ts_ns,
                        until: ts_ns + valid,
                    },
                );
            }
        }
        let key = (
            dns.name.clone().unwrap_or_default(),
            dns.qtype.clone().unwrap_or_default(),
            dns.answers.iter().map(|a| a.data.clone()).collect(),
        );
        if s.logged.get(&key).is_some_and(|until| *until > ts_ns) {
            return false;
        }
        if s.logged.len() >= MAX_PER_SESSION {
            s.logged.retain(|_, until| *until > ts_ns);
            if s.logged.len() >= MAX_PER_SESSION {
                s.logged.clear();
            }
        }
        let relog = (i128::from(min_ttl) * 1_000_000_000).max(RELOG_NS);
        s.logged.insert(key, ts_ns + relog);
        true
    }

    /// The name the session's answers gave `addr`, valid at `at_ns` (a connect's
    /// time, a flow's start).
    pub fn name_of(&self, session: SessionId, addr: IpAddr, at_ns: i128) -> Option<&str> {
        let e = self
            .sessions
            .get(&session)?
            .by_addr
            .get(&addr.to_canonical())?;
        // A flow may start a little before the answer's record is read (clock
        // readings of two CPUs): a second of slack.
        (e.from - 1_000_000_000 <= at_ns && at_ns <= e.until).then_some(e.name.as_str())
    }

    /// Forgets a session (some time after its end: its last flows come late).
    pub fn forget(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        Proto,
        dns::{Answer, Direction},
    };

    fn answer(name: &str, addr: &str, ttl: u32) -> Dns {
        Dns {
            server: "127.0.0.53".parse().expect("ip"),
            port: 53,
            proto: Proto::Udp,
            direction: Direction::Answer,
            id: Some(1),
            name: Some(name.into()),
            qtype: Some("A".into()),
            rcode: Some("NoError".into()),
            answers: vec![Answer {
                name: name.into(),
                rtype: "A".into(),
                data: addr.into(),
                ttl,
            }],
            len: 60,
            cut: false,
            error: None,
            cookie: 1,
        }
    }

    const S: i128 = 1_000_000_000;

    #[test]
    fn names_follow_the_session_and_the_ttl() {
        let mut n = Names::default();
        let a: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(n.learn(
            SessionId(1),
            &answer("up.example", "10.1.2.3", 3600),
            100 * S
        ));
        assert_eq!(n.name_of(SessionId(1), a, 101 * S), Some("up.example"));
        // Another session did not ask.
        assert_eq!(n.name_of(SessionId(2), a, 101 * S), None);
        // Past the TTL.
        assert_eq!(n.name_of(SessionId(1), a, 3701 * S), None);
        // A v4-mapped address is the same destination.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(n.name_of(SessionId(1), mapped, 200 * S), Some("up.example"));
        // A short TTL holds for the floor.
        n.learn(
            SessionId(1),
            &answer("short.example", "10.9.9.9", 1),
            100 * S,
        );
        let b: IpAddr = "10.9.9.9".parse().expect("ip");
        assert_eq!(n.name_of(SessionId(1), b, 399 * S), Some("short.example"));
        assert_eq!(n.name_of(SessionId(1), b, 401 * S), None);
    }

    #[test]
    fn repeats_within_the_ttl_are_not_logged_again() {
        let mut n = Names::default();
        let ans = answer("up.example", "10.1.2.3", 120);
        assert!(n.learn(SessionId(1), &ans, 0));
        assert!(!n.learn(SessionId(1), &ans, 100 * S));
        assert!(n.learn(SessionId(1), &ans, 121 * S));
        assert!(n.learn(SessionId(2), &ans, 121 * S));
    }

    #[test]
    fn bounded_per_session() {
        let mut n = Names::default();
        for i in 0..(MAX_PER_SESSION + 10) {
            let addr = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            n.learn(SessionId(1), &answer("x.example", &addr, 60 + i as u32), 0);
        }
        assert_eq!(
            n.sessions[&SessionId(1)].by_addr.len(),
            MAX_PER_SESSION,
            "the map stays bounded"
        );
    }
}
