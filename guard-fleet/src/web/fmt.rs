//! How numbers, times and optional text look on the pages (the templates call these
//! by path; askama escapes what they return).

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A time in unix ms, however the template holds it (a field, a binding).
pub trait Ms {
    fn ms(&self) -> i64;
}

impl Ms for i64 {
    fn ms(&self) -> i64 {
        *self
    }
}

impl<T: Ms + ?Sized> Ms for &T {
    fn ms(&self) -> i64 {
        (**self).ms()
    }
}

/// `4.0 MiB`.
pub fn bytes(n: impl Borrow<i64>) -> String {
    let n = *n.borrow();
    bytesize::ByteSize::b(u64::try_from(n).unwrap_or(0))
        .display()
        .iec()
        .to_string()
}

/// `4.0 MiB`, of an unsigned count.
pub fn ubytes(n: impl Borrow<u64>) -> String {
    let n = *n.borrow();
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// `2026-11-21 05:00` (UTC).
pub fn time(ms: impl Ms) -> String {
    let ms = ms.ms();
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || "—".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// `2026-11-21 05:00:03` (UTC).
pub fn time_s(ms: impl Ms) -> String {
    let ms = ms.ms();
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || "—".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// An optional time.
pub fn time_opt(ms: impl Borrow<Option<i64>>) -> String {
    let ms = *ms.borrow();
    ms.map_or_else(|| "—".to_owned(), time)
}

/// `11-21`: a day on a chart's axis.
pub fn day(ms: impl Borrow<i64>) -> String {
    let ms = *ms.borrow();
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format("%m-%d").to_string())
}

/// `1h 5m`, `42s`.
pub fn duration(ms: impl Borrow<i64>) -> String {
    let ms = *ms.borrow();
    let s = ms.max(0) / 1000;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, sec) => format!("{m}m {sec}s"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

/// `3 min ago`, from `now_ms`.
pub fn ago(now_ms: impl Ms, ms: impl Ms) -> String {
    let (now_ms, ms) = (now_ms.ms(), ms.ms());
    let s = (now_ms - ms).max(0) / 1000;
    if s < 90 {
        format!("{s} s ago")
    } else if s < 90 * 60 {
        format!("{} min ago", s / 60)
    } else if s < 48 * 3600 {
        format!("{} h ago", s / 3600)
    } else {
        format!("{} days ago", s / 86_400)
    }
}

/// The text, or a dash.
pub fn or_dash(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "—",
    }
}

/// The text, or nothing.
pub fn or_empty(v: Option<&str>) -> &str {
    v.unwrap_or("")
}

/// `v` percent-encoded for a URL's query or path segment.
pub fn url(v: &str) -> String {
    utf8_percent_encode(v, COMPONENT).to_string()
}

/// A count with thousands separated: `12,345`.
pub fn count(n: impl Borrow<i64>) -> String {
    let n = *n.borrow();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The link to a session's page.
pub fn session_href(host: &str, uid: &str) -> String {
    format!("/sessions/{}?host={}", url(uid), url(host))
}

/// Whether guard `v` is older than `newest` (the fleet's newest).
pub fn older(v: Option<&str>, newest: Option<&str>) -> bool {
    use crate::store::read::version_key;
    match (v, newest) {
        (Some(v), Some(n)) => version_key(v) < version_key(n),
        _ => false,
    }
}

/// A clock's skew for people: `3d 2h ahead`, `5m 0s behind`.
pub fn skew(ms: impl Borrow<i64>) -> String {
    let ms = *ms.borrow();
    let way = if ms >= 0 { "ahead" } else { "behind" };
    // To the minute: a batch takes milliseconds to arrive.
    let minutes = (ms.abs() + 30_000) / 60_000;
    format!("{} {way}", duration(minutes * 60_000))
}

/// A row's days as small bars (inline SVG: attributes, no style), each scaled to
/// the row's own busiest day, with each day's count as its title.
pub fn spark(values: impl Borrow<Vec<i64>>) -> String {
    let values = values.borrow();
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let w = values.len().max(1) * 4;
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} 20\" preserveAspectRatio=\"none\" role=\"img\">"
    );
    for (i, v) in values.iter().enumerate() {
        if *v <= 0 {
            continue;
        }
        // At least 3 units: one hit is seen beside six hundred.
        let h = ((v * 20 + max - 1) / max).clamp(3, 20);
        svg.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"3\" height=\"{h}\"><title>{v}</title></rect>",
            i * 4,
            20 - h
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(bytes(4 << 20), "4.0 MiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(duration(600_000), "10m 0s");
        assert_eq!(duration(3_900_000), "1h 5m");
        assert_eq!(time(1_795_237_200_000), "2026-11-21 05:00");
        assert_eq!(ago(1_000_000, 1_000_000 - 180_000), "3 min ago");
        assert_eq!(url("eu/node 1&x"), "eu%2Fnode%201%26x");
        assert_eq!(url("m-b_0.a~"), "m-b_0.a~");
        assert_eq!(or_dash(None), "—");
        assert_eq!(skew(3 * 86_400_000 + 7_200_000), "3d 2h ahead");
        assert!(older(Some("0.1.9"), Some("0.1.10")));
        assert!(!older(Some("0.2.0"), Some("0.1.10")));
        let one_beside_600 = spark(vec![600, 0, 1]);
        assert!(one_beside_600.contains("height=\"20\""));
        assert!(one_beside_600.contains("height=\"3\"><title>1</title>"));
    }
}
