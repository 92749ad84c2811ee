//! The closed sets an [`EventLine`](super::EventLine)'s fields take their values
//! from, each a type whose names are the schema's (docs/events.md): the daemon
//! builds the line from them, and a client reads them back as the same types.
//!
//! A line written by a newer daemon may carry a name this build does not know:
//! [`Known`] keeps it as written, so a line read and written again is the line
//! read, byte for byte.

extern crate alloc;

use alloc::{string::String, vec::Vec};
use core::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value of a closed set as a line carries it: one this build knows, or a name
/// a newer writer wrote, kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Known<T> {
    Is(T),
    Other(String),
}

impl<T> Known<T> {
    /// The value, when this build knows it.
    pub fn get(&self) -> Option<&T> {
        match self {
            Self::Is(v) => Some(v),
            Self::Other(_) => None,
        }
    }
}

impl<T: Copy + Into<&'static str>> Known<T> {
    /// The name in the line.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Is(v) => (*v).into(),
            Self::Other(name) => name,
        }
    }
}

/// The names of a list of values, joined by `sep` (`read,write`).
pub fn join<T: Copy + Into<&'static str>>(list: &[Known<T>], sep: &str) -> String {
    let names: Vec<&str> = list.iter().map(Known::as_str).collect();
    names.join(sep)
}

/// What a line without the field reads as (another writer's): no name, written
/// back as `""`, as it was read.
impl<T> Default for Known<T> {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl<T> From<T> for Known<T> {
    fn from(v: T) -> Self {
        Self::Is(v)
    }
}

impl<T: PartialEq> PartialEq<T> for Known<T> {
    fn eq(&self, other: &T) -> bool {
        self.get() == Some(other)
    }
}

impl<T: Copy + Into<&'static str>> fmt::Display for Known<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Copy + Into<&'static str>> Serialize for Known<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: FromStr> Deserialize<'de> for Known<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(name.parse().map_or(Self::Other(name), Self::Is))
    }
}

/// What a system call returned, as a line says it (`result`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallResult {
    /// It succeeded (`ok`).
    Ok,
    /// It failed: the errno's name (`EACCES`, `EPERM`, …; `E<n>` for a number
    /// without one).
    Errno(String),
    /// A value no system call returns, from a damaged record (`invalid`).
    Invalid,
    /// A route's process was killed before the call returned (`killed`).
    Killed,
}

impl CallResult {
    /// The name in the line.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ok => "ok",
            Self::Errno(name) => name,
            Self::Invalid => "invalid",
            Self::Killed => "killed",
        }
    }

    /// The call succeeded.
    pub fn is_ok(&self) -> bool {
        *self == Self::Ok
    }
}

/// What a line without `result` reads as (another writer's): an errno without a
/// name, written back as `""`, as it was read.
impl Default for CallResult {
    fn default() -> Self {
        Self::Errno(String::new())
    }
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CallResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CallResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "ok" => Self::Ok,
            "invalid" => Self::Invalid,
            "killed" => Self::Killed,
            _ => Self::Errno(name),
        })
    }
}

/// Declares a closed set of names: the enum with the derives every set has (its
/// names by strum, in the case given; `Known` parses a line's name with them),
/// `as_str` and `Display` (its name in the line).
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident in $case:literal { $($variants:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[derive(strum::IntoStaticStr, strum::EnumString)]
        #[strum(serialize_all = $case)]
        pub enum $name { $($variants)* }

        impl $name {
            /// The name in the line.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_set! {
    /// An access an open asks for (`access`).
    #[derive(strum::VariantArray)]
    Access in "lowercase" {
        Read,
        Write,
        Create,
        Truncate,
    }
}

closed_set! {
    /// How the kernel's rule matched the file (`by`).
    #[derive(strum::VariantArray)]
    By in "lowercase" {
        /// By (device, inode): the file, under whatever path it was opened.
        Identity,
    }
}

closed_set! {
    /// Where a destination's `host` came from (`host_source`).
    #[derive(strum::VariantArray)]
    HostSource in "lowercase" {
        /// The session's own DNS answers.
        Dns,
        /// The policy's resolution of the names in its network rules.
        Policy,
    }
}

closed_set! {
    /// A Unix socket's type (`socket`).
    #[derive(strum::VariantArray)]
    SockType in "lowercase" {
        Stream,
        Dgram,
        Seqpacket,
        Unknown,
    }
}

impl SockType {
    /// The type of a socket's `SOCK_*` number.
    pub fn from_u16(sock_type: u16) -> Self {
        match sock_type {
            1 => Self::Stream,
            2 => Self::Dgram,
            5 => Self::Seqpacket,
            _ => Self::Unknown,
        }
    }

    /// Its `SOCK_*` number (0 for `unknown`).
    pub fn number(self) -> u16 {
        match self {
            Self::Stream => 1,
            Self::Dgram => 2,
            Self::Seqpacket => 5,
            Self::Unknown => 0,
        }
    }
}

closed_set! {
    /// An address's family (`family`).
    #[derive(strum::VariantArray)]
    Family in "lowercase" {
        Ipv4,
        Ipv6,
    }
}

closed_set! {
    /// A transport protocol (`proto`).
    Proto in "lowercase" {
        Tcp,
        Udp,
        /// Another protocol number (the line says `other`; read back, the number is 0).
        Other(u16),
    }
}

impl Proto {
    /// The protocol of a socket of this type and protocol number.
    pub fn from_socket(sock_type: u16, protocol: u16) -> Self {
        match (sock_type, protocol) {
            (_, 6) | (1, 0) => Self::Tcp,
            (_, 17) | (2, 0) => Self::Udp,
            (_, p) => Self::Other(p),
        }
    }
}

closed_set! {
    /// What a tamper attempt was (`op`; `crate::tamper`'s numbers).
    TamperOp in "snake_case" {
        Signal,
        Ptrace,
        ProcessVm,
        PidfdGetfd,
        PtraceAccess,
        ProcOpen,
        PinOpen,
        PinChange,
        Bpf,
        PerfEventOpen,
        SetOwner,
        /// A number this build does not know (the line says `unknown`; read back, the
        /// number is 0).
        Unknown(u32),
    }
}

impl TamperOp {
    pub fn from_u32(v: u32) -> Self {
        use crate::tamper as t;
        match v {
            t::SIGNAL => Self::Signal,
            t::PTRACE => Self::Ptrace,
            t::PROCESS_VM => Self::ProcessVm,
            t::PIDFD_GETFD => Self::PidfdGetfd,
            t::PTRACE_ACCESS => Self::PtraceAccess,
            t::PROC_OPEN => Self::ProcOpen,
            t::PIN_OPEN => Self::PinOpen,
            t::PIN_CHANGE => Self::PinChange,
            t::BPF => Self::Bpf,
            t::PERF_EVENT_OPEN => Self::PerfEventOpen,
            t::SET_OWNER => Self::SetOwner,
            other => Self::Unknown(other),
        }
    }
}

closed_set! {
    /// What the kernel did about a tamper attempt (`done`).
    #[derive(strum::VariantArray)]
    TamperDone in "snake_case" {
        /// BPF-LSM refused it.
        Denied,
        /// SIGKILL sent from the system call.
        Killed,
        /// The kernel could not queue the signal.
        KillFailed,
    }
}

impl TamperDone {
    /// From a tamper record's `rule` bits (`crate::rules::enforced`).
    pub fn from_enforced(enforced: u16) -> Self {
        use crate::rules::enforced as e;
        if enforced & e::DENIED != 0 {
            Self::Denied
        } else if enforced & e::KILLED != 0 {
            Self::Killed
        } else {
            Self::KillFailed
        }
    }
}

closed_set! {
    /// Why the kernel sent a `flow` record (`reason`; `crate::flow`'s numbers).
    FlowReason in "lowercase" {
        Periodic,
        Close,
        Redirect,
        /// A number this build does not know (the line says `unknown`).
        Unknown(u32),
    }
}

impl FlowReason {
    pub fn from_u32(v: u32) -> Self {
        match v {
            crate::flow::PERIODIC => Self::Periodic,
            crate::flow::CLOSE => Self::Close,
            crate::flow::REDIRECT => Self::Redirect,
            other => Self::Unknown(other),
        }
    }
}

closed_set! {
    /// Why the kernel sent a `limit` record (`reason`; `crate::limit`'s numbers).
    LimitReason in "snake_case" {
        /// Plain records of the session went over `[limits] rate`/`burst`.
        Rate,
        /// A child could not be tracked: the map of tracked processes is full.
        TrackFull,
        /// A number this build does not know (the line says `unknown`).
        Unknown(u32),
    }
}

impl LimitReason {
    pub fn from_u32(v: u32) -> Self {
        match v {
            crate::limit::RATE => Self::Rate,
            crate::limit::TRACK_FULL => Self::TrackFull,
            other => Self::Unknown(other),
        }
    }
}

closed_set! {
    /// Which way a DNS message went (`direction`).
    #[derive(strum::VariantArray)]
    DnsDirection in "lowercase" {
        /// Sent by the session's socket.
        Query,
        /// Received by the session's socket.
        Answer,
    }
}

closed_set! {
    /// Which runner an exec'd file is (`via`).
    #[derive(strum::VariantArray)]
    Via in "lowercase" {
        /// The dynamic loader (`ld-linux*.so*`, `ld-musl-*.so*`, `ld.so`).
        Loader,
        /// A shell or script interpreter.
        Interpreter,
        /// A multi-call binary (`busybox`, `toybox`): the target is the applet's name.
        Applet,
    }
}

closed_set! {
    /// The class of a destination (`dest_class`), a bounded label for metrics and
    /// views.
    #[derive(strum::VariantArray)]
    DestClass in "snake_case" {
        /// Loopback or unspecified.
        Local,
        /// A model API.
        Model,
        /// A package registry.
        Registry,
        /// A code host.
        CodeHost,
        /// Another name of the policy's network rules.
        Allowlisted,
        Other,
    }
}

#[cfg(test)]
mod tests {
    use alloc::{borrow::ToOwned as _, vec, vec::Vec};

    use strum::VariantArray;

    use super::*;

    fn names<T: Copy + Into<&'static str>>(values: &[T]) -> String {
        let names: Vec<&str> = values.iter().map(|v| (*v).into()).collect();
        names.join(" ")
    }

    /// The names events carry are the schema's (docs/events.md): derived from the
    /// variants, and held here word for word.
    #[test]
    fn values_keep_the_schema_s_names() {
        assert_eq!(names(Access::VARIANTS), "read write create truncate");
        assert_eq!(names(By::VARIANTS), "identity");
        assert_eq!(names(HostSource::VARIANTS), "dns policy");
        assert_eq!(names(SockType::VARIANTS), "stream dgram seqpacket unknown");
        assert_eq!(names(Family::VARIANTS), "ipv4 ipv6");
        assert_eq!(
            names(&[Proto::Tcp, Proto::Udp, Proto::Other(132)]),
            "tcp udp other"
        );
        let ops: Vec<TamperOp> = (1..=11).chain([99]).map(TamperOp::from_u32).collect();
        assert_eq!(
            names(&ops),
            "signal ptrace process_vm pidfd_getfd ptrace_access proc_open pin_open pin_change \
             bpf perf_event_open set_owner unknown"
        );
        assert_eq!(names(TamperDone::VARIANTS), "denied killed kill_failed");
        let flows = [
            crate::flow::PERIODIC,
            crate::flow::CLOSE,
            crate::flow::REDIRECT,
            99,
        ];
        assert_eq!(
            names(&flows.map(FlowReason::from_u32)),
            "periodic close redirect unknown"
        );
        let limits = [crate::limit::RATE, crate::limit::TRACK_FULL, 99];
        assert_eq!(
            names(&limits.map(LimitReason::from_u32)),
            "rate track_full unknown"
        );
        assert_eq!(names(DnsDirection::VARIANTS), "query answer");
        assert_eq!(names(Via::VARIANTS), "loader interpreter applet");
        assert_eq!(
            names(DestClass::VARIANTS),
            "local model registry code_host allowlisted other"
        );
    }

    /// A name this build knows reads as its value; one it does not (a newer
    /// writer's) is kept as written; both are written back as they were read.
    #[test]
    fn a_name_is_written_back_as_it_was_read() {
        let read: Vec<Known<Access>> =
            serde_json::from_str(r#"["read","append",""]"#).expect("names");
        assert_eq!(
            read,
            vec![
                Known::Is(Access::Read),
                Known::Other("append".to_owned()),
                Known::Other(String::new())
            ]
        );
        assert_eq!(
            serde_json::to_string(&read).expect("json"),
            r#"["read","append",""]"#
        );
        assert_eq!(join(&read, ","), "read,append,");
        let results: Vec<CallResult> =
            serde_json::from_str(r#"["ok","EACCES","invalid","killed"]"#).expect("results");
        assert_eq!(
            results,
            vec![
                CallResult::Ok,
                CallResult::Errno("EACCES".to_owned()),
                CallResult::Invalid,
                CallResult::Killed
            ]
        );
        assert_eq!(
            serde_json::to_string(&results).expect("json"),
            r#"["ok","EACCES","invalid","killed"]"#
        );
        let unknown: Known<TamperOp> = serde_json::from_str(r#""unknown""#).expect("op");
        assert_eq!(unknown, TamperOp::Unknown(0));
    }
}
