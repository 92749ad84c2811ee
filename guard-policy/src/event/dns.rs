//! DNS messages of session sockets (`dns` records): the bytes the kernel copied,
//! read with hickory-proto's decoder (never by hand), into what the views and the
//! name map need: the question, the answers, the response code.

use std::net::IpAddr;

use hickory_proto::{
    op::{Header, Message, MessageType, Query},
    rr::{RData, Record},
    serialize::binary::{BinDecodable, BinDecoder},
};

use super::Proto;

/// Which way the message went.
pub use guard_common::line::DnsDirection as Direction;

/// One resource record of an answer section: its owner name (without the trailing
/// dot), type (`A`, `AAAA`, `CNAME`, …), data as text and TTL; as events carry it.
pub use guard_common::line::DnsAnswer as Answer;

/// Characters of a DNS name events keep whole: longer names keep their last
/// [`DNS_NAME_TAIL`] characters (the domain), the rest is cut.
pub const DNS_NAME_KEEP: usize = 64;
/// See [`DNS_NAME_KEEP`].
pub const DNS_NAME_TAIL: usize = 40;

/// `name` cut to its domain when it is longer than [`DNS_NAME_KEEP`]: `…(N
/// characters cut)` and the last [`DNS_NAME_TAIL`] characters, from a label's
/// start.
pub fn cut_name(name: &str) -> Option<String> {
    let chars = name.chars().count();
    if chars <= DNS_NAME_KEEP {
        return None;
    }
    let tail: String = name.chars().skip(chars - DNS_NAME_TAIL).collect();
    let keep = tail.split_once('.').map_or("", |(_, t)| t);
    let dot = if keep.is_empty() { "" } else { "." };
    let cut = chars - keep.chars().count() - dot.len();
    Some(format!("…({cut} characters cut){dot}{keep}"))
}

/// The address of an `A`/`AAAA` record.
pub fn answer_addr(a: &Answer) -> Option<IpAddr> {
    matches!(a.rtype.as_str(), "A" | "AAAA")
        .then(|| a.data.parse().ok())
        .flatten()
}

/// The details of a `dns` event.
#[derive(Clone, Debug, PartialEq)]
pub struct Dns {
    /// The DNS server the socket talks to, and its port.
    pub server: IpAddr,
    pub port: u16,
    pub proto: Proto,
    pub direction: Direction,
    /// The message's id, when its header was read.
    pub id: Option<u16>,
    /// The (first) question's name, without the trailing dot.
    pub name: Option<String>,
    /// The question's type (`A`, `AAAA`, `TXT`, …).
    pub qtype: Option<String>,
    /// Answers: the response code (`NoError`, `NXDomain`, …).
    pub rcode: Option<String>,
    pub answers: Vec<Answer>,
    /// Bytes of the message the packet carried (more than the kernel copied when
    /// `cut`).
    pub len: u32,
    /// The kernel copied only the first bytes (`guard_common::DNS_PAYLOAD_MAX`):
    /// the answers that did not fit are missing.
    pub cut: bool,
    /// Why the message could not be read (in full), if it could not.
    pub error: Option<String>,
    /// The socket's cookie (its flow's `flow_id` starts with it, in hex).
    pub cookie: u64,
}

/// What a message's bytes say.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub id: Option<u16>,
    pub name: Option<String>,
    pub qtype: Option<String>,
    pub rcode: Option<String>,
    pub answers: Vec<Answer>,
    pub error: Option<String>,
}

/// A name as text, without the root's trailing dot.
fn text(name: &hickory_proto::rr::Name) -> String {
    let s = name.to_ascii();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => s,
    }
}

fn answer(r: &Record) -> Answer {
    let data = match &r.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(c) => text(&c.0),
        // Some record types' Display fails on data it cannot print (found by the
        // `decode` fuzz target): `to_string` would panic, so a failure says so.
        other => {
            use std::fmt::Write as _;
            let mut out = String::new();
            match write!(out, "{other}") {
                Ok(()) => out,
                Err(_) => format!("(unprintable {} data)", other.record_type()),
            }
        }
    };
    Answer {
        name: text(&r.name),
        rtype: r.record_type().to_string(),
        data,
        ttl: r.ttl,
    }
}

fn question(q: &Query, out: &mut Parsed) {
    out.name = Some(text(&q.name));
    out.qtype = Some(q.query_type.to_string());
}

/// Reads a DNS message. `tcp`: the bytes are a TCP segment's, which start with the
/// message's 2-byte length. A message that does not read whole (cut by the kernel,
/// a TCP message over several segments, or malformed) gives what could be read
/// record by record, with `error` saying why the rest could not.
pub fn parse(bytes: &[u8], tcp: bool) -> Parsed {
    let mut out = Parsed::default();
    let msg = if tcp {
        let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
            out.error = Some("a TCP segment shorter than a length prefix".into());
            return out;
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if len != rest.len() {
            out.error = Some(format!(
                "the TCP segment holds {} of the message's {len} bytes",
                rest.len()
            ));
        }
        &rest[..len.min(rest.len())]
    } else {
        bytes
    };
    match Message::from_vec(msg) {
        Ok(m) => {
            out.id = Some(m.metadata.id);
            if m.metadata.message_type == MessageType::Response {
                out.rcode = Some(format!("{:?}", m.metadata.response_code));
            }
            if let Some(q) = m.queries.first() {
                question(q, &mut out);
            }
            out.answers = m.answers.iter().map(answer).collect();
        }
        Err(e) => {
            // Record by record, as far as the bytes go.
            let mut d = BinDecoder::new(msg);
            let header = match Header::read(&mut d) {
                Ok(h) => h,
                Err(_) => {
                    out.error = Some(format!("not a DNS message: {e}"));
                    return out;
                }
            };
            out.id = Some(header.metadata.id);
            if header.metadata.message_type == MessageType::Response {
                out.rcode = Some(format!("{:?}", header.metadata.response_code));
            }
            if header.counts.queries > 0
                && let Ok(q) = Query::read(&mut d)
            {
                question(&q, &mut out);
                for _ in 1..header.counts.queries {
                    if Query::read(&mut d).is_err() {
                        break;
                    }
                }
            }
            for _ in 0..header.counts.answers {
                match Record::read(&mut d) {
                    Ok(r) => out.answers.push(answer(&r)),
                    Err(_) => break,
                }
            }
            out.error.get_or_insert_with(|| e.to_string());
        }
    }
    out
}

/// Test helpers for this crate's tests and its users' (the daemon's decoder).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{Name, RData, Record, RecordType, rdata},
    };

    /// A DNS response for `name`: a CNAME to `edge.cdn.example.`, which has `addrs`.
    pub fn response(name: &str, addrs: &[Ipv4Addr]) -> Vec<u8> {
        let n = Name::from_ascii(name).expect("name");
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(n.clone(), RecordType::A));
        let cname = Name::from_ascii("edge.cdn.example.").expect("name");
        m.add_answer(Record::from_rdata(
            n,
            300,
            RData::CNAME(rdata::CNAME(cname.clone())),
        ));
        for a in addrs {
            m.add_answer(Record::from_rdata(
                cname.clone(),
                60,
                RData::A(rdata::A(*a)),
            ));
        }
        m.to_vec().expect("encode")
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RecordType},
    };

    use super::{test_support::response, *};

    #[test]
    fn a_long_name_keeps_only_its_domain() {
        assert_eq!(cut_name("api.openai.com"), None);
        let name = format!("{}.{}.t.attacker.example", "a".repeat(40), "b".repeat(30));
        let cut = cut_name(&name).expect("cut");
        assert!(cut.ends_with(".t.attacker.example"), "{cut}");
        assert!(!cut.contains("aaaa") && !cut.contains("bbbb"), "{cut}");
        let kept = ".t.attacker.example".len();
        assert_eq!(
            cut,
            format!("…({} characters cut).t.attacker.example", name.len() - kept)
        );
        // One long label: nothing of it is kept.
        let one = "c".repeat(70);
        assert_eq!(cut_name(&one), Some("…(70 characters cut)".to_owned()));
    }

    #[test]
    fn an_answer_reads_with_its_question_and_records() {
        let bytes = response("upload.guard-test.example.", &[Ipv4Addr::new(10, 9, 8, 7)]);
        let p = parse(&bytes, false);
        assert_eq!(p.error, None);
        assert_eq!(p.id, Some(7));
        assert_eq!(p.name.as_deref(), Some("upload.guard-test.example"));
        assert_eq!(p.qtype.as_deref(), Some("A"));
        assert_eq!(p.rcode.as_deref(), Some("NoError"));
        assert_eq!(p.answers.len(), 2);
        assert_eq!(p.answers[0].rtype, "CNAME");
        assert_eq!(p.answers[0].data, "edge.cdn.example");
        assert_eq!(
            answer_addr(&p.answers[1]),
            Some("10.9.8.7".parse().expect("ip"))
        );
        assert_eq!(p.answers[1].ttl, 60);
    }

    #[test]
    fn a_query_has_no_response_code() {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("api.openai.com.").expect("name"),
            RecordType::AAAA,
        ));
        let p = parse(&m.to_vec().expect("encode"), false);
        assert_eq!(p.name.as_deref(), Some("api.openai.com"));
        assert_eq!(p.qtype.as_deref(), Some("AAAA"));
        assert_eq!(p.rcode, None);
        assert!(p.answers.is_empty());
    }

    #[test]
    fn a_cut_message_gives_the_records_that_fit_and_says_so() {
        let addrs: Vec<Ipv4Addr> = (0..40).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let bytes = response("many.example.", &addrs);
        assert!(bytes.len() > 512);
        let p = parse(&bytes[..512], false);
        assert!(p.error.is_some());
        assert_eq!(p.name.as_deref(), Some("many.example"));
        assert!(
            p.answers.len() > 10 && p.answers.len() < 41,
            "{}",
            p.answers.len()
        );
    }

    #[test]
    fn tcp_messages_carry_a_length_prefix() {
        let msg = response("t.example.", &[Ipv4Addr::new(1, 2, 3, 4)]);
        let mut seg = u16::try_from(msg.len())
            .expect("len")
            .to_be_bytes()
            .to_vec();
        seg.extend_from_slice(&msg);
        let p = parse(&seg, true);
        assert_eq!(p.error, None);
        assert_eq!(
            answer_addr(&p.answers[1]),
            Some("1.2.3.4".parse().expect("ip"))
        );
        // Half a message: what fits, flagged.
        let p = parse(&seg[..seg.len() - 3], true);
        assert!(p.error.expect("an error").contains("TCP segment"));
    }

    #[test]
    fn garbage_is_flagged_not_dropped() {
        let p = parse(b"\x01\x02", false);
        assert!(p.error.expect("an error").starts_with("not a DNS message"));
        assert_eq!(p.name, None);
    }
}
