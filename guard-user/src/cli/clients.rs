//! The small client commands over the control socket: `guard sessions`, `guard
//! events`, `guard status`, `guard kill`; and how an event reads for people
//! (`guard events` and `guard top` share it).

use std::{
    io::{BufRead, Write},
    path::Path,
};

use anyhow::Context as _;
use guard_common::{
    line::EventLine,
    protocol::{KillReport, Request, SessionInfo, SessionState, Status},
};

use crate::control::client;

pub fn sessions(socket: &Path, json: bool) -> anyhow::Result<()> {
    let list: Vec<SessionInfo> = client::call(socket, &Request::Sessions)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<14} {:>7} {:>7}  {:<10} {:<8} {:>6} {:>6} {:>6} {:>8} {:>8} {:>5}  {:<36}  {:<40}  REPOSITORY",
        "SESSION",
        "AGENT",
        "ROOT",
        "AGENTPID",
        "USER",
        "STATE",
        "EXEC",
        "OPEN",
        "NET",
        "OUT",
        "IN",
        "VIOL",
        "THREAD",
        "CWD"
    );
    for s in &list {
        let c = &s.counts;
        println!(
            "{:<16}  {:<14} {:>7} {:>7}  {:<10} {:<8} {:>6} {:>6} {:>6} {:>8} {:>8} {:>5}  {:<36}  {:<40}  {}",
            s.id,
            s.agent,
            s.root_pid,
            s.agent_pid
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            s.user.as_deref().unwrap_or("-"),
            match s.state {
                SessionState::Running => "running",
                SessionState::Ended => "ended",
            },
            c.exec,
            c.open,
            c.connect + c.send,
            human_bytes(c.bytes_out),
            human_bytes(c.bytes_in),
            c.violations,
            // More than one thread (several conversations): the first, and a count.
            match s.agent_threads.as_slice() {
                [] => "-".to_owned(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} +{}", rest.len()),
            },
            s.cwd.as_deref().unwrap_or("-"),
            s.repository
                .as_ref()
                .map_or_else(|| "-".to_owned(), guard_common::report::Repository::summary),
        );
    }
    Ok(())
}

pub use guard_common::line::human_bytes;

/// How `guard report` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Json,
    /// Its violations as SARIF.
    Sarif,
    /// One HTML page.
    Html,
}

/// `guard report`: from the daemon, or folded from an audit log; Markdown, JSON, its
/// violations as SARIF, or an HTML page.
pub fn report(
    session: &str,
    socket: &Path,
    log: Option<&Path>,
    format: ReportFormat,
) -> anyhow::Result<()> {
    let report = match log {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            crate::report::from_log(std::io::BufReader::new(file), session)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => client::call(
            socket,
            &Request::Report {
                session: session.to_owned(),
            },
        )?,
    };
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Sarif => {
            serde_json::to_string_pretty(&crate::report::sarif::render(&report))? + "\n"
        }
        ReportFormat::Html => crate::report::html::render(&report),
        ReportFormat::Markdown => crate::report::markdown(&report),
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

pub fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let status: Status = client::call(socket, &Request::Status)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status_text(&status));
    }
    Ok(())
}

/// The export's line of `guard status`: its state, what waits, what was sent and
/// dropped, and when the endpoint last took a batch.
fn export_text(x: &guard_common::protocol::ExportStatus) -> String {
    let state = match &x.last_error {
        Some(e) => format!("{} ({e})", x.state),
        None => x.state.clone(),
    };
    let dropped: u64 = x.dropped.values().sum();
    let dropped = if dropped == 0 {
        "0".to_owned()
    } else {
        let parts: Vec<String> = x
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("{dropped} ({})", parts.join(", "))
    };
    format!(
        "{state} to {}; pending {}, spool {} ({}), sent {} ({}), {} retries, dropped {dropped}, \
         last success {}",
        x.endpoint,
        x.pending,
        x.spool_records,
        human_bytes(x.spool_bytes),
        x.sent_records,
        human_bytes(x.sent_bytes),
        x.retries,
        x.last_success.as_deref().unwrap_or("never"),
    )
}

/// `guard status` for people.
#[expect(
    clippy::too_many_lines,
    reason = "one labelled line per field of the status, in the order `guard status` prints them"
)]
fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let lost = s.lost.as_ref().map_or_else(
        || "unknown (the kernel's counters could not be read)".to_owned(),
        |m| {
            let total: u64 = m.values().sum();
            let parts: Vec<String> = m
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            if parts.is_empty() {
                "0".to_owned()
            } else {
                format!("{total} ({})", parts.join(", "))
            }
        },
    );
    let line = |out: &mut String, key: &str, value: String| {
        out.push_str(&format!("{key:<14} {value}\n"));
    };
    line(
        &mut out,
        "policy",
        format!("{} ({})", s.policy, s.mode.as_str()),
    );
    line(
        &mut out,
        "events",
        format!("{} ({:.0}/s)", s.events_total, s.events_per_second),
    );
    line(&mut out, "lost", lost);
    if let Some(p) = &s.package_names {
        let state = match (&p.unavailable, p.ready) {
            (Some(why), _) => format!("not judged: {why}"),
            (None, true) => format!("{} names known to the organisation", p.names),
            (None, false) => "not judged yet: the fleet's list has not arrived".to_owned(),
        };
        line(&mut out, "first seen", state);
    }
    if let Some(id) = &s.identity {
        line(
            &mut out,
            "identity",
            format!(
                "{} opens matched by identity, {} too deep to place (failed closed)",
                id.matched, id.unknown
            ),
        );
    }
    line(
        &mut out,
        "daemon",
        format!(
            "cpu {:.2} s, memory {:.1} MiB, {} subscriber(s)",
            s.cpu_seconds,
            s.rss_bytes as f64 / f64::from(1 << 20),
            s.subscribers
        ),
    );
    line(
        &mut out,
        "attached",
        format!(
            "{} of {} attachments, {} programs{}",
            s.attachments,
            s.attachments_expected,
            s.programs.len(),
            if s.ebpf_build.is_empty() {
                String::new()
            } else {
                format!(" ({} build)", s.ebpf_build)
            }
        ),
    );
    if let Some((program, most)) = s.verified_insns.iter().max_by_key(|(_, n)| **n) {
        line(
            &mut out,
            "verifier",
            format!(
                "{} instructions for {} programs at load; most: {program} {most} ({}% of the \
                 kernel's limit)",
                s.verified_insns
                    .values()
                    .map(|n| u64::from(*n))
                    .sum::<u64>(),
                s.verified_insns.len(),
                u64::from(*most) * 100 / 1_000_000
            ),
        );
    }
    for (program, limit) in &s.over_verifier_limits {
        line(
            &mut out,
            "refused",
            format!("{program}: the verifier's limit ({limit}); a fault of this build"),
        );
    }
    if let Some(x) = &s.export {
        line(&mut out, "export", export_text(x));
    }
    if let Some(l) = s.kill_latency_us {
        line(
            &mut out,
            "kill latency",
            format!("p50 {} µs, p99 {} µs (user space)", l.p50, l.p99),
        );
    }
    if !s.user_space_rules.is_empty() {
        line(
            &mut out,
            "user space",
            format!(
                "{} (decided after the event)",
                s.user_space_rules.join(", ")
            ),
        );
    }
    out.push_str("enforcement:\n");
    // The longest action's width (`route_open_by_handle_at`), so the tiers line up.
    let width = s
        .enforcement
        .iter()
        .map(|e| e.action.len())
        .max()
        .unwrap_or(0);
    for e in &s.enforcement {
        out.push_str(&format!(
            "  {:<width$} {:<16} {}\n",
            e.action, e.tier, e.guarantee
        ));
        if let Some(why) = &e.fallback_reason {
            out.push_str(&format!("  {:<width$} {:<16} ({why})\n", "", ""));
        }
    }
    out
}

pub fn kill(socket: &Path, session: Option<String>, pid: Option<u32>) -> anyhow::Result<()> {
    let report: KillReport = client::call(socket, &Request::Kill { session, pid })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// How `guard events` writes each event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    /// One line for people.
    Human,
    /// guard's event lines (docs/events.md).
    Json,
    /// OCSF 1.7 records.
    Ocsf,
}

pub fn events(
    socket: &Path,
    session: Option<String>,
    kinds: Vec<String>,
    format: EventFormat,
) -> anyhow::Result<()> {
    let mut lines = client::subscribe(socket, &Request::Subscribe { session, kinds })?;
    let stdout = std::io::stdout();
    let host = crate::audit::OcsfHost::this();
    let mut line = String::new();
    loop {
        line.clear();
        if lines
            .read_line(&mut line)
            .context("reading events from the daemon")?
            == 0
        {
            anyhow::bail!("the daemon closed the stream");
        }
        let mut out = stdout.lock();
        let written = render(line.trim_end(), format, &host)
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"));
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(()); // reader went away (e.g. piped into head)
        }
    }
}

/// `guard events --log FILE`: the events of an audit log, written as guard's lines or
/// as OCSF records (each line read as what it is), filtered and written in `format`.
pub fn events_of_log(
    path: &Path,
    session: Option<String>,
    kinds: Vec<String>,
    format: EventFormat,
) -> anyhow::Result<()> {
    let input: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        ))
    };
    let host = crate::audit::OcsfHost::this();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(event) =
            native(&line).with_context(|| format!("{}:{}: not an event", path.display(), n + 1))?
        else {
            // A Detection Finding: it repeats its activity's violation.
            if format == EventFormat::Ocsf && session.is_none() && kinds.is_empty() {
                writeln!(out, "{line}").ok();
            }
            continue;
        };
        let kind = event.get("kind").and_then(serde_json::Value::as_str);
        if !kinds.is_empty() && !kinds.iter().any(|k| Some(k.as_str()) == kind) {
            continue;
        }
        if let Some(s) = &session
            && event.get("session").and_then(serde_json::Value::as_str) != Some(s.as_str())
        {
            continue;
        }
        let text = if guard_common::ocsf::is_ocsf(&serde_json::from_str(&line)?) {
            line_text(&event)
        } else {
            line // guard's own line, as it was written
        };
        let written = render(&text, format, &host)
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"));
        if written.is_err() {
            return Ok(()); // reader went away
        }
    }
    Ok(())
}

/// The event a line of an audit log holds: a guard event line as it is, an OCSF
/// activity record read back; `None` for a Detection Finding.
pub fn native(line: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    if !v.is_object() {
        anyhow::bail!("not a JSON object");
    }
    if guard_common::ocsf::is_ocsf(&v) {
        return Ok(guard_common::ocsf::event_of(&v)?);
    }
    Ok(Some(v))
}

/// An event as the daemon writes its line: the fields in `EventLine`'s order when
/// this client knows every one of them, else as they are.
pub fn line_text(event: &serde_json::Value) -> String {
    if let Ok(line) = serde_json::from_value::<EventLine>(event.clone())
        && serde_json::to_value(&line).ok().as_ref() == Some(event)
        && let Ok(text) = serde_json::to_string(&line)
    {
        return text;
    }
    event.to_string()
}

/// An event line (guard's JSON) as `format` writes it: one line, or its OCSF records.
fn render(line: &str, format: EventFormat, host: &crate::audit::OcsfHost) -> Vec<String> {
    match format {
        EventFormat::Json => vec![line.to_owned()],
        EventFormat::Human => vec![match serde_json::from_str::<EventLine>(line) {
            Ok(ev) => human(&ev),
            Err(_) => line.to_owned(),
        }],
        EventFormat::Ocsf => match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => guard_common::ocsf::records(&v, &host.context())
                .iter()
                .map(serde_json::Value::to_string)
                .collect(),
            Err(_) => vec![line.to_owned()],
        },
    }
}

/// One line per event for people: time, session, pid, comm, kind, what, and the
/// rule broken.
pub fn human(ev: &EventLine) -> String {
    let time = ev.ts.get(11..23).unwrap_or("");
    let session = ev.session.as_deref().unwrap_or("");
    let what = ev.what_resolved();
    let mut line = format!(
        "{time} {:<8} {:>7} {:<15} {:<7} {:<13} {what}",
        session.get(8..).unwrap_or(session),
        ev.pid().unwrap_or(0),
        ev.comm().unwrap_or(""),
        ev.task.as_ref().map_or("-", |t| t.role.as_str()),
        ev.detail.kind(),
    );
    if let Some(v) = &ev.violation {
        line.push_str(&format!(
            "  ! {} → {} ({})",
            v.rule,
            v.action.as_str(),
            v.outcome.as_str()
        ));
    }
    line
}

/// `guard fleet ARGS`: replaces this process with `guard-fleet ARGS`, the one beside
/// this executable first, else the one on the PATH.
pub fn fleet(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    const FLEET: &str = "guard-fleet";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(FLEET)))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| FLEET.into());
    let err = std::process::Command::new(&program).args(args).exec();
    Err(anyhow::anyhow!(
        "cannot run {}: {err} (guard-fleet is its own binary: cargo build --release -p guard-fleet)",
        program.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_name_what_happened() {
        let ev: EventLine = serde_json::from_str(
            r#"{"ts":"2026-11-21T05:42:36.688345123Z","kind":"open","session":"000000f27677c8c0","pid":42,"comm":"cat","role":"tool","path":"/root/.ssh/id_rsa","access":["read"],"result":"ok","rule":"ssh-keys","action":"kill","outcome":"killed"}"#,
        )
        .expect("json");
        assert_eq!(
            human(&ev),
            "05:42:36.688 7677c8c0      42 cat             tool    open          /root/.ssh/id_rsa (read) ok  ! ssh-keys → kill (killed)"
        );
    }

    /// The audit log written as OCSF reads back, through `guard events --log`'s
    /// reader, as the very lines the native log has.
    #[test]
    fn an_ocsf_audit_log_reads_back_as_the_native_one() {
        use crate::audit::{OcsfHost, Sink};
        let dir = tempfile::tempdir().expect("tempdir");
        let (native_path, ocsf_path) = (dir.path().join("native"), dir.path().join("ocsf"));
        let mut plain = Sink::open(&native_path).expect("open");
        let mut ocsf = Sink::open(&ocsf_path).expect("open");
        ocsf.set_ocsf(Some(OcsfHost {
            hostname: "build-01".into(),
            host_uid: Some("0123456789abcdef0123456789abcdef".into()),
        }));
        let lines = [
            r#"{"schema":2,"ts":"2026-11-21T05:42:36.688345123Z","session":"000000f27677c8c0","pid":42,"ppid":1,"tid":42,"comm":"cat","role":"tool","uid":1000,"user":"dev","cgroup_id":9,"container":null,"kind":"open","path":"/root/.ssh/id_rsa","path_resolved":true,"path_truncated":false,"access":["read"],"flags":0,"call":"openat","result":"ok","fd":3,"rule":"ssh-keys","action":"kill","outcome":"killed","alert":true,"rules":["ssh-keys"],"secret":true}"#,
            r#"{"schema":2,"ts":"2026-11-21T05:42:37Z","session":"000000f27677c8c0","pid":43,"ppid":42,"tid":43,"comm":"curl","role":"tool","uid":1000,"user":"dev","cgroup_id":9,"container":null,"kind":"connect","addr":"203.0.113.9","port":443,"proto":"tcp","family":"ipv4","result":"EPERM","errno":1,"rule":"network.egress","action":"deny","outcome":"denied","alert":true,"rules":["network.egress"]}"#,
            r#"{"schema":2,"ts":"2026-11-21T05:42:38Z","kind":"lost","by_kind":{"open":3},"total":3}"#,
        ];
        for l in lines {
            let ev: EventLine = serde_json::from_str(l).expect("an event line");
            plain.write_event(&ev).expect("write");
            ocsf.write_line(l).expect("write");
        }
        plain.flush().expect("flush");
        ocsf.flush().expect("flush");
        let written = std::fs::read_to_string(&ocsf_path).expect("read");
        assert_eq!(
            written.lines().count(),
            5,
            "3 activities, 2 findings:\n{written}"
        );
        let back: Vec<String> = written
            .lines()
            .filter_map(|l| native(l).expect("a record"))
            .map(|e| line_text(&e))
            .collect();
        let expected: Vec<String> = std::fs::read_to_string(&native_path)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(back, expected);
        assert_eq!(
            back,
            lines.map(str::to_owned),
            "the daemon's lines, as written"
        );
    }

    #[test]
    fn human_bytes_are_short() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1024), "1.0Ki");
        assert_eq!(human_bytes(1_100_000), "1.0Mi");
        assert_eq!(human_bytes(37 << 20), "37Mi");
    }

    /// A daemon's status: a quiet one on the `ci` policy in enforce mode, with the
    /// fields of `over` in place of its own.
    fn status_with(over: serde_json::Value) -> Status {
        let mut v = serde_json::json!({
            "events_total": 3, "events_per_second": 0.0, "lost": {"open": 0},
            "cpu_seconds": 0.5, "rss_bytes": 1048576, "programs": ["a"], "attachments": 1,
            "attachments_expected": 1, "subscribers": 0, "policy": "ci", "mode": "enforce",
            "user_space_rules": [], "kill_latency_us": null, "enforcement": []
        });
        if let (Some(base), Some(over)) = (v.as_object_mut(), over.as_object()) {
            base.extend(over.clone());
        }
        serde_json::from_value(v).expect("status")
    }

    #[test]
    fn status_for_people_names_the_fallback() {
        let s = status_with(serde_json::json!({
            "mode": "observe",
            "enforcement": [{"action": "file_exec_deny", "tier": "tracepoint",
                             "guarantee": "acts as kill", "fallback_reason": "BPF-LSM unavailable"}],
            "verified_insns": {"sys_exit_open": 256139, "sched_process_fork": 1490}
        }));
        let text = status_text(&s);
        assert!(
            text.contains(
                "verifier       257629 instructions for 2 programs at load; most: sys_exit_open \
                 256139 (25% of the kernel's limit)"
            ),
            "{text}"
        );
        assert!(text.contains("policy         ci (observe)"), "{text}");
        assert!(text.contains("lost           0\n"), "{text}");
        assert!(text.contains("(BPF-LSM unavailable)"), "{text}");
        assert!(!text.contains("export"), "no export configured: {text}");
        assert!(!text.contains("refused"), "nothing refused: {text}");
    }

    #[test]
    fn status_for_people_names_a_program_refused_at_a_verifier_limit() {
        let s = status_with(serde_json::json!({
            "attachments_expected": 2,
            "over_verifier_limits": {
                "sys_exit_open": "combined stack size of 3 calls is 544. Too large"
            }
        }));
        let text = status_text(&s);
        assert!(
            text.contains(
                "refused        sys_exit_open: the verifier's limit (combined stack size of 3 \
                 calls is 544. Too large); a fault of this build\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn status_for_people_shows_the_export() {
        let s = status_with(serde_json::json!({
            "export": {"endpoint": "https://fleet:4318/v1/logs", "state": "retrying",
                       "pending": 2, "spool_records": 7, "spool_bytes": 5120,
                       "sent_records": 100, "sent_bytes": 2048, "retries": 3,
                       "dropped": {"queue_full": 0, "spool_full_events": 5, "rejected": 1},
                       "last_error": "connection refused",
                       "last_success": "2026-11-26T10:00:00Z"}
        }));
        let text = status_text(&s);
        assert!(
            text.contains(
                "export         retrying (connection refused) to https://fleet:4318/v1/logs; \
                 pending 2, spool 7 (5.0Ki), sent 100 (2.0Ki), 3 retries, dropped 6 \
                 (rejected 1, spool_full_events 5), last success 2026-11-26T10:00:00Z\n"
            ),
            "{text}"
        );
    }
}
