//! The small client commands over the control socket: `guard sessions`, `guard
//! events`, `guard status`, `guard kill`.

use std::{
    io::{BufRead, Write},
    path::Path,
};

use anyhow::Context as _;
use serde_json::Value;

use crate::control::{Request, client};

pub fn sessions(socket: &Path, json: bool) -> anyhow::Result<()> {
    let data = client::call(socket, &Request::Sessions)?
        .data
        .unwrap_or(Value::Null);
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<14} {:>7}  {:<10} {:<8} {:>6} {:>6} {:>6} {:>5}  CWD",
        "SESSION", "AGENT", "ROOT", "USER", "STATE", "EXEC", "OPEN", "NET", "VIOL"
    );
    for s in data.as_array().into_iter().flatten() {
        let c = &s["counts"];
        let net = c["connect"].as_u64().unwrap_or(0) + c["send"].as_u64().unwrap_or(0);
        println!(
            "{:<16}  {:<14} {:>7}  {:<10} {:<8} {:>6} {:>6} {:>6} {:>5}  {}",
            s["id"].as_str().unwrap_or("?"),
            s["agent"].as_str().unwrap_or("?"),
            s["root_pid"],
            s["user"].as_str().unwrap_or("-"),
            s["state"].as_str().unwrap_or("?"),
            c["exec"],
            c["open"],
            net,
            c["violations"],
            s["cwd"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

pub fn status(socket: &Path) -> anyhow::Result<()> {
    let data = client::call(socket, &Request::Status)?
        .data
        .unwrap_or(Value::Null);
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

pub fn kill(socket: &Path, session: Option<String>, pid: Option<u32>) -> anyhow::Result<()> {
    let data = client::call(socket, &Request::Kill { session, pid })?
        .data
        .unwrap_or(Value::Null);
    println!("{data}");
    Ok(())
}

pub fn events(
    socket: &Path,
    session: Option<String>,
    kinds: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut lines = client::subscribe(socket, &Request::Subscribe { session, kinds })?;
    let stdout = std::io::stdout();
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
        let written = if json {
            out.write_all(line.as_bytes())
        } else {
            match serde_json::from_str::<Value>(&line) {
                Ok(ev) => writeln!(out, "{}", human(&ev)),
                Err(_) => out.write_all(line.as_bytes()),
            }
        };
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(()); // reader went away (e.g. piped into head)
        }
    }
}

/// One line per event for people: time, session, pid, comm, kind, what.
pub fn human(ev: &Value) -> String {
    let s = |k: &str| ev[k].as_str().unwrap_or("").to_owned();
    let kind = s("kind");
    let time = ev["ts"]
        .as_str()
        .and_then(|t| t.get(11..23))
        .unwrap_or("")
        .to_owned();
    let what = match kind.as_str() {
        "exec" => {
            let argv: Vec<&str> = ev["argv"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .collect();
            format!("{} [{}]", s("exe"), argv.join(" "))
        }
        "open" => {
            let access: Vec<&str> = ev["access"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .collect();
            format!("{} ({}) {}", s("path"), access.join(","), s("result"))
        }
        "connect" | "send" => format!(
            "{} {}:{} {}",
            s("proto"),
            s("addr"),
            ev["port"],
            s("result")
        ),
        "fork" => format!("child {}", ev["child_pid"]),
        "exit" => match ev.get("signal") {
            Some(sig) => format!("killed by signal {sig}"),
            None => format!("code {}", ev["exit_code"]),
        },
        "session_start" => format!("{} started ({})", s("agent"), s("how")),
        "session_end" => format!("ended; stragglers {}", ev["stragglers"]),
        "lost" => format!("LOST {}", ev["by_kind"]),
        "missed" => format!(
            "this client missed {} events (it read too slowly)",
            ev["count"]
        ),
        _ => ev.to_string(),
    };
    let session = s("session");
    format!(
        "{time} {:<8} {:>7} {:<15} {:<13} {what}",
        session.get(8..).unwrap_or(&session),
        ev["pid"].as_u64().unwrap_or(0),
        s("comm"),
        kind
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_name_what_happened() {
        let ev: Value = serde_json::from_str(
            r#"{"ts":"2026-11-21T05:42:36.688345123Z","kind":"open","session":"000000f27677c8c0","pid":42,"comm":"cat","path":"/root/.ssh/id_rsa","access":["read"],"result":"ok"}"#,
        )
        .expect("json");
        assert_eq!(
            human(&ev),
            "05:42:36.688 7677c8c0      42 cat             open          /root/.ssh/id_rsa (read) ok"
        );
    }
}
