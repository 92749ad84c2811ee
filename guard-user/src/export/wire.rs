//! An audit line straight to the bytes of its log record: what [`record::event`]
//! then [`record::encode_with_id`] make of it, in one pass over the line and with
//! no tree in between. Every exported event crosses this (measured at 50,000
//! events/s: parsing the line into a `serde_json::Value`, building the
//! `LogRecord` of owned strings and encoding it was half of the daemon's CPU).
//!
//! The body is the event's fields in the line's order (the tree's were sorted by
//! key); the attributes, their order, the times, the severity and the name are
//! `record::event`'s, which a unit test holds by decoding both.
//!
//! [`record::event`]: super::record::event
//! [`record::encode_with_id`]: super::record::encode_with_id

use std::borrow::Cow;
use std::fmt;

use guard_common::otlp::{self, attr};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};

use super::record::{self, Host};

/// `LogRecord`'s fields (opentelemetry/proto/logs/v1/logs.proto).
mod log_record {
    pub(super) const TIME_UNIX_NANO: u32 = 1;
    pub(super) const SEVERITY_NUMBER: u32 = 2;
    pub(super) const SEVERITY_TEXT: u32 = 3;
    pub(super) const BODY: u32 = 5;
    pub(super) const ATTRIBUTES: u32 = 6;
    pub(super) const OBSERVED_TIME_UNIX_NANO: u32 = 11;
    pub(super) const EVENT_NAME: u32 = 12;
}

/// `AnyValue`'s, `KeyValue`'s and the lists' fields (common/v1/common.proto).
mod any {
    pub(super) const STRING: u32 = 1;
    pub(super) const BOOL: u32 = 2;
    pub(super) const INT: u32 = 3;
    pub(super) const DOUBLE: u32 = 4;
    pub(super) const ARRAY: u32 = 5;
    pub(super) const KVLIST: u32 = 6;
    /// `ArrayValue.values` and `KeyValueList.values`.
    pub(super) const VALUES: u32 = 1;
    pub(super) const KEY: u32 = 1;
    pub(super) const VALUE: u32 = 2;
}

/// The top-level strings lifted into attributes, in `record::event`'s order.
const STRINGS: [(&str, &str); 14] = record::LIFTED_STRINGS;

/// Where a top-level value goes besides the body.
#[derive(Clone, Copy)]
enum Slot {
    None,
    /// `Lifted::strings[i]`: `STRINGS[i]`, then the extra keys below.
    Str(usize),
    /// `Lifted::ints[i]`: pid, ppid, uid, port.
    Int(usize),
    /// The command line: the strings of the array, joined by spaces.
    Argv,
}

const KIND: usize = STRINGS.len();
const SESSION: usize = KIND + 1;
const TS: usize = KIND + 2;
const PATH: usize = KIND + 3;
const HOST: usize = KIND + 4;
const ADDR: usize = KIND + 5;
const PROTO: usize = KIND + 6;
const N_STRINGS: usize = KIND + 7;
const PID: usize = 0;
const PPID: usize = 1;
const UID: usize = 2;
const PORT: usize = 3;

fn slot(key: &str) -> Slot {
    match key {
        "kind" => Slot::Str(KIND),
        "session" => Slot::Str(SESSION),
        "ts" => Slot::Str(TS),
        "path" => Slot::Str(PATH),
        "host" => Slot::Str(HOST),
        "addr" => Slot::Str(ADDR),
        "proto" => Slot::Str(PROTO),
        "pid" => Slot::Int(PID),
        "ppid" => Slot::Int(PPID),
        "uid" => Slot::Int(UID),
        "port" => Slot::Int(PORT),
        "argv" => Slot::Argv,
        _ => STRINGS
            .iter()
            .position(|(k, _)| *k == key)
            .map_or(Slot::None, Slot::Str),
    }
}

/// What the attributes need of the line, read while the body is written.
#[derive(Default)]
struct Lifted<'de> {
    strings: [Option<Cow<'de, str>>; N_STRINGS],
    ints: [Option<i64>; 4],
    argv: Option<String>,
}

impl Lifted<'_> {
    fn str(&self, i: usize) -> Option<&str> {
        self.strings[i].as_deref()
    }
}

/// Encodes audit lines as log records; keeps its buffers from one to the next.
#[derive(Default)]
pub struct Encoder {
    body: Vec<u8>,
    scratch: Vec<u8>,
    uid: String,
}

impl Encoder {
    /// Appends to `out` the encoded log record of the audit line `line` with the id
    /// made of `spool` and `seq`: the bytes `record::encode_with_id(record::event(…))`
    /// would decode to (but for the body's order). A line that is not a JSON object
    /// is an error and leaves `out` as it was.
    pub fn event(
        &mut self,
        line: &str,
        host: &Host,
        spool: u64,
        seq: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        self.body.clear();
        let mut lifted = Lifted::default();
        let mut de = serde_json::Deserializer::from_str(line);
        de.deserialize_map(TopLevel {
            out: &mut self.body,
            lifted: &mut lifted,
        })?;
        de.end()?;
        let kind = lifted.str(KIND).unwrap_or("unknown");
        let outcome = STRINGS.iter().position(|(k, _)| *k == "outcome");
        let (number, text) = record::severity(outcome.and_then(|i| lifted.str(i)));
        let time = lifted.str(TS).map_or(0, record::rfc3339_ns);

        fixed64(out, log_record::TIME_UNIX_NANO, time);
        if number != 0 {
            encode_key(log_record::SEVERITY_NUMBER, WireType::Varint, out);
            encode_varint(number as u64, out);
        }
        string(out, log_record::SEVERITY_TEXT, text);
        encode_key(log_record::BODY, WireType::LengthDelimited, out);
        // The body: an AnyValue holding the kvlist the parse wrote.
        let list_len = self.body.len();
        let any_len = 1 + encoded_len_varint(list_len as u64) + list_len;
        encode_varint(any_len as u64, out);
        encode_key(any::KVLIST, WireType::LengthDelimited, out);
        encode_varint(list_len as u64, out);
        out.extend_from_slice(&self.body);

        let a = &mut self.scratch;
        let mut id = [0; 32];
        kv_str(
            out,
            a,
            attr::RECORD_ID,
            otlp::write_record_id(spool, seq, &mut id),
        );
        kv_str(out, a, attr::EVENT_KIND, kind);
        if let Some(s) = lifted.str(SESSION) {
            kv_str(out, a, attr::SESSION_ID, s);
            otlp::write_session_uid(&mut self.uid, &host.id, &host.boot_id, s);
            kv_str(out, a, attr::SESSION_UID, &self.uid);
        }
        if let Some(pid) = lifted.ints[PID] {
            kv_int(out, a, attr::PROCESS_PID, pid);
        }
        if let Some(ppid) = lifted.ints[PPID] {
            kv_int(out, a, attr::PROCESS_PARENT_PID, ppid);
        }
        for (i, (_, name)) in STRINGS.iter().enumerate() {
            if let Some(v) = lifted.str(i) {
                kv_str(out, a, name, v);
            }
        }
        if let Some(uid) = lifted.ints[UID] {
            kv_int(out, a, attr::USER_ID, uid);
        }
        if let Some(line) = &lifted.argv {
            kv_str(out, a, attr::PROCESS_COMMAND_LINE, line);
        }
        if record::has_file_path(kind)
            && let Some(path) = lifted.str(PATH)
        {
            kv_str(out, a, attr::FILE_PATH, path);
        }
        if record::has_server(kind) {
            if let Some(server) = lifted.str(HOST).or_else(|| lifted.str(ADDR)) {
                kv_str(out, a, attr::SERVER_ADDRESS, server);
            }
            if let Some(port) = lifted.ints[PORT] {
                kv_int(out, a, attr::SERVER_PORT, port);
            }
            if let Some(proto) = lifted.str(PROTO) {
                kv_str(out, a, attr::NETWORK_TRANSPORT, proto);
            }
        }
        fixed64(out, log_record::OBSERVED_TIME_UNIX_NANO, record::now_ns());
        encode_key(log_record::EVENT_NAME, WireType::LengthDelimited, out);
        encode_varint((otlp::EVENT_PREFIX.len() + kind.len()) as u64, out);
        out.extend_from_slice(otlp::EVENT_PREFIX.as_bytes());
        out.extend_from_slice(kind.as_bytes());
        Ok(())
    }
}

fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn string(out: &mut Vec<u8>, tag: u32, value: &str) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

/// One attribute (a `KeyValue` in field `attributes`) whose value is a string:
/// written to `scratch`, then to `out` behind its length.
fn kv_str(out: &mut Vec<u8>, scratch: &mut Vec<u8>, key: &str, value: &str) {
    scratch.clear();
    string(scratch, any::KEY, key);
    encode_key(any::VALUE, WireType::LengthDelimited, scratch);
    encode_varint(
        (1 + encoded_len_varint(value.len() as u64) + value.len()) as u64,
        scratch,
    );
    string(scratch, any::STRING, value);
    attribute(out, scratch);
}

/// One attribute whose value is an integer.
fn kv_int(out: &mut Vec<u8>, scratch: &mut Vec<u8>, key: &str, value: i64) {
    scratch.clear();
    string(scratch, any::KEY, key);
    encode_key(any::VALUE, WireType::LengthDelimited, scratch);
    encode_varint((1 + encoded_len_varint(value as u64)) as u64, scratch);
    encode_key(any::INT, WireType::Varint, scratch);
    encode_varint(value as u64, scratch);
    attribute(out, scratch);
}

fn attribute(out: &mut Vec<u8>, kv: &[u8]) {
    encode_key(log_record::ATTRIBUTES, WireType::LengthDelimited, out);
    encode_varint(kv.len() as u64, out);
    out.extend_from_slice(kv);
}

/// Opens a length-delimited field `tag` in `out`, with one byte kept for its
/// length: returns where its content starts.
fn open(out: &mut Vec<u8>, tag: u32) -> usize {
    encode_key(tag, WireType::LengthDelimited, out);
    out.push(0);
    out.len()
}

/// Closes the field opened at `start`: its length goes before its content, in the
/// byte kept for it when it fits (under 128 bytes: most fields), or else with the
/// content moved up.
fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let mut prefix = [0u8; 10];
    let mut at = &mut prefix[..];
    encode_varint(len as u64, &mut at);
    let n = 10 - at.len();
    out[start - 1] = prefix[0];
    if n > 1 {
        out.splice(start..start, prefix[1..n].iter().copied());
    }
}

/// The line's object: each field a `KeyValue` of the body's list, and the ones the
/// attributes need kept aside.
struct TopLevel<'a, 'de> {
    out: &'a mut Vec<u8>,
    lifted: &'a mut Lifted<'de>,
}

impl<'de> Visitor<'de> for TopLevel<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        entries(self.out, map, Some(self.lifted))
    }
}

/// A map's entries, each a `KeyValue` of a list; with `lifted` (the line's own
/// fields), the values the attributes need are kept too.
fn entries<'de, A: MapAccess<'de>>(
    out: &mut Vec<u8>,
    mut map: A,
    mut lifted: Option<&mut Lifted<'de>>,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(Key)? {
        let kv = open(out, any::VALUES);
        string(out, any::KEY, &key);
        let value = open(out, any::VALUE);
        map.next_value_seed(Any {
            out,
            slot: if lifted.is_some() {
                slot(&key)
            } else {
                Slot::None
            },
            lifted: lifted.as_deref_mut(),
        })?;
        close(out, value);
        close(out, kv);
    }
    Ok(())
}

/// A key, borrowed from the line when it has no escape (`Cow<str>`'s own
/// `Deserialize` always copies: a malloc and a free for every key of every event).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// One JSON value as the content of an `AnyValue` (`otlp::json_to_any`'s mapping),
/// kept in its slot when it is of the slot's type.
struct Any<'a, 'de> {
    out: &'a mut Vec<u8>,
    slot: Slot,
    lifted: Option<&'a mut Lifted<'de>>,
}

impl<'de> DeserializeSeed<'de> for Any<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Any<'_, 'de> {
    fn keep_str(self, s: Cow<'de, str>) {
        string(self.out, any::STRING, &s);
        if let (Slot::Str(i), Some(lifted)) = (self.slot, self.lifted) {
            lifted.strings[i] = Some(s);
        }
    }

    fn double(self, v: f64) {
        encode_key(any::DOUBLE, WireType::SixtyFourBit, self.out);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    fn keep_int(self, v: i64) {
        encode_key(any::INT, WireType::Varint, self.out);
        encode_varint(v as u64, self.out);
        if let (Slot::Int(i), Some(lifted)) = (self.slot, self.lifted) {
            lifted.ints[i] = Some(v);
        }
    }
}

impl<'de> Visitor<'de> for Any<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        encode_key(any::BOOL, WireType::Varint, self.out);
        encode_varint(u64::from(v), self.out);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.keep_int(v);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        // Past i64, a double (as `serde_json::Number::as_i64` then `as_f64`).
        match i64::try_from(v) {
            Ok(i) => self.keep_int(i),
            Err(_) => self.double(v as f64),
        }
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.double(v);
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.keep_str(Cow::Borrowed(v));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.keep_str(Cow::Owned(v.to_owned()));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.keep_str(Cow::Owned(v));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let list = open(self.out, any::ARRAY);
        let mut argv = matches!(self.slot, Slot::Argv).then(String::new);
        let mut words = 0usize;
        loop {
            let item = open(self.out, any::VALUES);
            let Some(text) = seq.next_element_seed(Element {
                out: self.out,
                text: argv.is_some(),
            })?
            else {
                // No element after all: the tag just written (one byte: field 1)
                // and the byte kept for its length go.
                self.out.truncate(item - 2);
                break;
            };
            close(self.out, item);
            if let (Some(line), Some(text)) = (argv.as_mut(), text) {
                if words > 0 {
                    line.push(' ');
                }
                line.push_str(&text);
                words += 1;
            }
        }
        close(self.out, list);
        if let (Some(line), Some(lifted)) = (argv, self.lifted) {
            lifted.argv = Some(line);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let list = open(self.out, any::KVLIST);
        entries(self.out, map, None)?;
        close(self.out, list);
        Ok(())
    }
}

/// An element of an array: written as any value; its text when it is a string and
/// `text` (the command line's words).
struct Element<'a> {
    out: &'a mut Vec<u8>,
    text: bool,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if !self.text {
            Any {
                out: self.out,
                slot: Slot::None,
                lifted: None,
            }
            .deserialize(d)?;
            return Ok(None);
        }
        let mut word = Lifted::default();
        Any {
            out: self.out,
            slot: Slot::Str(0),
            lifted: Some(&mut word),
        }
        .deserialize(d)?;
        Ok(word.strings[0].take())
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
