//! A session report for people: Markdown, one section per question a security team
//! asks after an agent run.

use std::fmt::Write as _;

use super::{Bounded, FileUse, Files, Report};

pub(super) mod story;

/// Renders `r` as Markdown.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, r);
    out
}

fn or_dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// Text on one line of Markdown: no line breaks, no backticks breaking a code span.
pub(super) fn inline(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('`', "'")
}

/// A table cell: [`inline`], and no pipes.
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

#[expect(
    clippy::too_many_lines,
    reason = "the report top to bottom: summary, violations, commands, files, destinations"
)]
fn write_report(out: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(out, "# guard session report `{}`\n", r.session)?;
    writeln!(out, "| | |\n|---|---|")?;
    writeln!(out, "| agent | {} |", cell(or_dash(r.agent.as_deref())))?;
    let root = r.root_pid.map(|p| p.to_string());
    writeln!(out, "| root pid | {} |", or_dash(root.as_deref()))?;
    writeln!(out, "| started by | {} |", or_dash(r.how.as_deref()))?;
    writeln!(out, "| user | {} |", cell(or_dash(r.user.as_deref())))?;
    writeln!(
        out,
        "| workspace | {} |",
        cell(or_dash(r.workspace.as_deref()))
    )?;
    let repository = r
        .repository
        .as_ref()
        .map(guard_common::report::Repository::summary);
    writeln!(
        out,
        "| repository | {} |",
        cell(or_dash(repository.as_deref()))
    )?;
    writeln!(
        out,
        "| container | {} |",
        cell(or_dash(r.container.as_deref()))
    )?;
    writeln!(out, "| started | {} |", or_dash(r.started.as_deref()))?;
    let ended = r.ended.as_deref().unwrap_or("still running");
    writeln!(out, "| ended | {ended} |")?;
    let duration = r
        .duration_ms
        .map(|ms| format!("{}.{:03} s", ms / 1000, ms % 1000));
    writeln!(out, "| duration | {} |", or_dash(duration.as_deref()))?;
    writeln!(
        out,
        "| activity | {} commands, {} forks, {} destinations, {} violations |",
        r.commands.items.len() as u64 + r.commands.omitted,
        r.forks,
        r.destinations.items.len() as u64 + r.destinations.omitted,
        r.violations.items.len() as u64 + r.violations.omitted,
    )?;
    if r.dropped > 0 {
        writeln!(
            out,
            "\n**Incomplete:** the kernel dropped {} records of this session (over its \
             `[limits]`); what they said is not in this report.",
            r.dropped
        )?;
    }
    story::write(out, r)?;

    writeln!(out, "\n## Violations and what guard did\n")?;
    if r.violations.items.is_empty() {
        writeln!(out, "None.")?;
    } else {
        writeln!(
            out,
            "| time | pid | program | what | rule | action | outcome |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
        for v in &r.violations.items {
            writeln!(
                out,
                "| {} | {} | {} | `{}` | {} | {} | {}{} |",
                v.ts,
                v.pid,
                cell(&v.comm),
                cell(&v.what),
                cell(&v.rule),
                v.action,
                v.outcome,
                if v.alert { " (alert)" } else { "" }
            )?;
        }
        omitted(out, r.violations.omitted, "violations")?;
    }
    if !r.stragglers_killed.is_empty() {
        writeln!(
            out,
            "\nProcesses left when the agent exited, killed by the policy: {:?}.",
            r.stragglers_killed
        )?;
    }

    calls(out, r)?;
    secret_egress(out, r)?;
    packages(out, r)?;

    writeln!(out, "\n## Commands run\n")?;
    if r.commands.items.is_empty() {
        writeln!(out, "None seen.")?;
    } else {
        writeln!(
            out,
            "| time | pid | program | command line | sandbox | guard |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for c in &r.commands.items {
            writeln!(
                out,
                "| {} | {} | {} | `{}` | {} | {} |",
                c.ts,
                c.pid,
                cell(&c.exe),
                cell(&c.argv.join(" ")),
                match c.sandboxed {
                    Some(true) => "inside",
                    Some(false) => "**outside**",
                    None => "-",
                },
                cell(or_dash(c.verdict.as_deref())),
            )?;
        }
        omitted(out, r.commands.omitted, "commands")?;
    }

    writeln!(out, "\n## Files read\n")?;
    files(out, &r.read)?;
    writeln!(out, "\n## Files written\n")?;
    files(out, &r.written)?;

    writeln!(out, "\n## Destinations\n")?;
    if r.destinations.items.is_empty() {
        writeln!(out, "None.")?;
    } else {
        writeln!(
            out,
            "| destination | name | proto | connects | sends | failed | bytes out | bytes in | guard |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
        for d in &r.destinations.items {
            let at = if d.addr.contains(':') {
                format!("[{}]:{}", d.addr, d.port)
            } else {
                format!("{}:{}", d.addr, d.port)
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                at,
                cell(or_dash(d.host.as_deref())),
                d.proto,
                d.connects,
                d.sends,
                d.failed,
                d.bytes_out,
                d.bytes_in,
                cell(&verdicts(&d.verdicts)),
            )?;
        }
        omitted(out, r.destinations.omitted, "destinations")?;
        writeln!(
            out,
            "\nBytes in all: {} out, {} in (IP level, headers included; from the session's \
             flow records).",
            r.bytes_out, r.bytes_in
        )?;
    }
    if !r.unix_sockets.items.is_empty() {
        writeln!(out, "\n## Unix sockets\n")?;
        writeln!(
            out,
            "| socket | connects | sends | failed | first by | guard |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for u in &r.unix_sockets.items {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&u.path),
                u.connects,
                u.sends,
                u.failed,
                cell(&u.by),
                cell(&verdicts(&u.verdicts)),
            )?;
        }
        omitted(out, r.unix_sockets.omitted, "sockets")?;
    }
    Ok(())
}

/// "This session read secret X, then sent N bytes to Y": the session-level fact
/// that holds where taint does not follow (a secret handed to another process
/// through a pipe or a file).
fn secret_egress(out: &mut String, r: &Report) -> std::fmt::Result {
    let s = &r.secret_egress;
    writeln!(out, "\n## Secrets read, then egress\n")?;
    if s.secrets.items.is_empty() {
        return writeln!(
            out,
            "No secret was read (no open a `secret` rule let happen)."
        );
    }
    for read in &s.secrets.items {
        writeln!(
            out,
            "- This session read secret `{}` ({}, {} pid {}).",
            cell(&read.path),
            read.ts,
            cell(&read.comm),
            read.pid
        )?;
    }
    omitted(out, s.secrets.omitted, "secrets")?;
    if s.sent_after.items.is_empty() {
        return writeln!(out, "\nThen it contacted no destination.");
    }
    writeln!(out, "\nThen, after its first secret read:\n")?;
    for d in &s.sent_after.items {
        let host = d.host.as_deref().map(cell);
        let to = super::endpoint(&d.addr, d.port, host.as_deref());
        writeln!(
            out,
            "- it sent {} bytes to {to}/{} ({} attempts, {} failed{})",
            d.bytes_out,
            d.proto,
            d.attempts,
            d.failed,
            if d.tainted {
                ", some by a tainted process"
            } else {
                ""
            }
        )?;
    }
    omitted(out, s.sent_after.omitted, "destinations")
}

/// The packages the session installed and the packages' scripts that ran (shown
/// when there are any).
fn packages(out: &mut String, r: &Report) -> std::fmt::Result {
    if !r.packages.items.is_empty() {
        writeln!(out, "\n## Packages installed\n")?;
        writeln!(
            out,
            "| package | version | ecosystem | from | installed by | manifest |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for p in &r.packages.items {
            let version = match (&p.version, &p.note) {
                (Some(v), _) => v.clone(),
                (None, Some(note)) => format!("? ({note})"),
                (None, None) => "?".to_owned(),
            };
            let from = if p.registries.is_empty() {
                "-".to_owned()
            } else {
                p.registries.join(", ")
            };
            let by = match &p.command {
                Some(c) => format!("`{}` (pid {})", cell(c), p.pid),
                None => format!("{} (pid {})", cell(&p.by), p.pid),
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {by} | `{}` |",
                cell(&p.name),
                cell(&version),
                p.ecosystem,
                cell(&from),
                cell(&p.manifest),
            )?;
        }
        omitted(out, r.packages.omitted, "packages")?;
    }
    if !r.scripts.items.is_empty() {
        writeln!(out, "\n## Package scripts that ran\n")?;
        writeln!(
            out,
            "| time | package | kind | command | execs | reads | writes | secrets | destinations | guard |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
        for s in &r.scripts.items {
            writeln!(
                out,
                "| {} | {} | {} | `{}` (pid {}) | {} | {} | {} | {} | {} | {} |",
                s.ts,
                cell(&s.package),
                if s.install { "**install**" } else { "run" },
                cell(&s.command),
                s.pid,
                s.execs,
                s.reads,
                s.writes,
                cell(&verdicts(&s.secrets)),
                cell(&verdicts(&s.destinations)),
                cell(&verdicts(&s.verdicts)),
            )?;
        }
        omitted(out, r.scripts.omitted, "scripts")?;
    }
    Ok(())
}

/// The tool calls the agent declared and what each did, then the processes no call
/// accounts for (shown when the agent declared its calls through guard's hook).
fn calls(out: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(out, "\n## Tool calls the agent declared\n")?;
    if r.calls.items.is_empty() {
        return writeln!(
            out,
            "None: the agent declared no calls to guard (its hook is not installed, or the \
             agent has none), so what ran is not set against what it declared."
        );
    }
    if r.declared_by.as_deref() == Some("rollout") {
        writeln!(
            out,
            "Read from the agent's rollout file at the session's end (guard's hook was not \
             installed): each process is tied to the call open when the agent started it, \
             or whose command it runs.{}\n",
            match r.untied {
                0 => String::new(),
                n => format!(" {n} records of the session's processes were not kept for that."),
            }
        )?;
    }
    writeln!(
        out,
        "| started | call | declared | ran | destinations | secrets | written outside | guard |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    for c in &r.calls.items {
        let ran: Vec<String> = c
            .processes
            .iter()
            .map(|p| format!("`{}` ({})", cell(&p.argv.join(" ")), p.pid))
            .collect();
        let mut ran = verdicts(&ran);
        if c.execs > c.processes.len() as u64 {
            ran.push_str(&format!(" and {} more", c.execs - c.processes.len() as u64));
        }
        writeln!(
            out,
            "| {} | {} `{}`{} | `{}` | {ran} | {} | {} | {} | {} |",
            c.started,
            cell(&c.tool),
            cell(&c.id),
            if c.ended.is_none() { " (running)" } else { "" },
            cell(or_dash(c.command.as_deref())),
            cell(&verdicts(&c.destinations)),
            cell(&verdicts(&c.secrets)),
            cell(&verdicts(&c.written_outside)),
            cell(&verdicts(&c.verdicts)),
        )?;
    }
    omitted(out, r.calls.omitted, "calls")?;
    writeln!(out, "\n## Processes no call declared\n")?;
    if r.undeclared.items.is_empty() {
        return writeln!(out, "None: every process worked for a declared call.");
    }
    writeln!(out, "| time | pid | command | why | then |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for u in &r.undeclared.items {
        let why = match (u.why.as_str(), &u.call) {
            ("outlived_call", Some(call)) => format!("**outlived its call** `{}`", cell(call)),
            ("install_script", Some(call)) => {
                format!("an install script, in call `{}`", cell(call))
            }
            ("outside_calls", _) => "started by the agent outside every call".to_owned(),
            (why, _) => cell(why),
        };
        writeln!(
            out,
            "| {} | {} | `{}` | {why} | {} |",
            u.ts,
            u.pid,
            cell(&u.command),
            cell(&verdicts(&u.did)),
        )?;
    }
    omitted(out, r.undeclared.omitted, "processes")
}

fn verdicts(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

fn files(out: &mut String, f: &Files) -> std::fmt::Result {
    let any = [&f.secrets, &f.workspace, &f.outside, &f.system]
        .iter()
        .any(|l| !l.items.is_empty());
    if !any {
        return writeln!(out, "None seen.");
    }
    for (title, list) in [
        ("Secrets", &f.secrets),
        ("In the workspace", &f.workspace),
        ("Outside the workspace", &f.outside),
    ] {
        if list.items.is_empty() {
            continue;
        }
        writeln!(out, "### {title}\n")?;
        file_table(out, list)?;
        writeln!(out)?;
    }
    if !f.system.items.is_empty() {
        let opens: u64 = f.system.items.iter().map(|u| u.opens).sum();
        writeln!(
            out,
            "System files (libraries, programs, /etc, /proc, /sys, /dev): {} files, {} \
             opens (listed in the JSON report).",
            f.system.items.len() as u64 + f.system.omitted,
            opens
        )?;
    }
    Ok(())
}

fn file_table(out: &mut String, list: &Bounded<FileUse>) -> std::fmt::Result {
    writeln!(out, "| path | first by | opens | failed | guard |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for u in &list.items {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            cell(&u.path),
            cell(&u.by),
            u.opens,
            u.failed,
            cell(&verdicts(&u.verdicts)),
        )?;
    }
    omitted(out, list.omitted, "files")
}

fn omitted(out: &mut String, n: u64, what: &str) -> std::fmt::Result {
    if n > 0 {
        writeln!(
            out,
            "\n…and {n} more {what} (past {} listed).",
            super::MAX_ITEMS
        )?;
    }
    Ok(())
}
