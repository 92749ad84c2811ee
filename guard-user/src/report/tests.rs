//! A scripted session's events, as the audit log holds them, folded into its report.

use super::*;

/// The audit log of one session: its start, a git status in the workspace, a read of
/// an SSH key killed in the kernel, a write in the workspace, two connects (one
/// refused), a `.env` read that a secret alert rule let happen (after the connects,
/// before the flows' bytes), two flows to the model (one reported twice while it lasts, and closed
/// after the session's end, as the root's own sockets are), and its end; then a line
/// of another session.
const LOG: &str = r#"{"ts":"2026-11-22T08:00:00.000000000Z","kind":"session_start","session":"00000000000000aa","pid":10,"ppid":1,"comm":"agent","user":"alice","agent":"agent","root_pid":10,"how":"run","cwd":"/home/alice/repo","repository":{"url":"https://github.com/alice/repo.git","branch":"main","commit":"4f2a9c0e1b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e","root":"/home/alice/repo"}}
{"ts":"2026-11-22T08:00:00.100000000Z","kind":"exec","session":"00000000000000aa","pid":10,"ppid":1,"comm":"agent","user":"alice","exe":"/usr/bin/agent","argv":["agent","--task","x"],"root":true}
{"ts":"2026-11-22T08:00:00.200000000Z","kind":"fork","session":"00000000000000aa","pid":10,"comm":"agent","child_pid":11}
{"ts":"2026-11-22T08:00:00.300000000Z","kind":"exec","session":"00000000000000aa","pid":11,"ppid":10,"comm":"git","user":"alice","exe":"/usr/bin/git","argv":["git","status"],"root":false}
{"ts":"2026-11-22T08:00:00.310000000Z","kind":"open","session":"00000000000000aa","pid":11,"comm":"git","path":"/usr/lib/x86_64-linux-gnu/libz.so.1","access":["read"],"result":"ok"}
{"ts":"2026-11-22T08:00:00.320000000Z","kind":"open","session":"00000000000000aa","pid":11,"comm":"git","path":"/home/alice/repo/.git/HEAD","access":["read"],"result":"ok"}
{"ts":"2026-11-22T08:00:00.330000000Z","kind":"open","session":"00000000000000aa","pid":11,"comm":"git","path":"/home/alice/repo/.git/HEAD","access":["read"],"result":"ok"}
{"ts":"2026-11-22T08:00:00.340000000Z","kind":"open","session":"00000000000000aa","pid":11,"comm":"git","path":"/home/alice/.gitconfig","access":["read"],"result":"ok"}
{"ts":"2026-11-22T08:00:00.400000000Z","kind":"open","session":"00000000000000aa","pid":12,"comm":"cat","path":"/home/alice/.ssh/id_rsa","access":["read"],"result":"ok","rule":"credentials-read","action":"kill","outcome":"killed","alert":true,"rules":["credentials-read"],"secret":true}
{"ts":"2026-11-22T08:00:00.500000000Z","kind":"open","session":"00000000000000aa","pid":13,"comm":"sh","path":"/home/alice/repo/notes.txt","access":["write","create","truncate"],"result":"ok"}
{"ts":"2026-11-22T08:00:00.600000000Z","kind":"connect","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","result":"ok","host":"model.local"}
{"ts":"2026-11-22T08:00:00.610000000Z","kind":"connect","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","result":"ok","host":"model.local"}
{"ts":"2026-11-22T08:00:00.640000000Z","kind":"open","session":"00000000000000aa","pid":10,"comm":"agent","path":"/home/alice/repo/.env","access":["read"],"result":"ok","rule":"dotenv-read","action":"alert","outcome":"alerted","alert":true,"rules":["dotenv-read"],"secret":true}
{"ts":"2026-11-22T08:00:00.650000000Z","kind":"flow","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","bytes_out":600000,"bytes_in":2000,"flow_id":"1-2","reason":"periodic","dest_class":"local","host":"model.local"}
{"ts":"2026-11-22T08:00:00.660000000Z","kind":"flow","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","bytes_out":600000,"bytes_in":2000,"flow_id":"1-2","reason":"periodic","dest_class":"local","host":"model.local"}
{"ts":"2026-11-22T08:00:00.670000000Z","kind":"flow","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","bytes_out":100,"bytes_in":50,"flow_id":"3-4","reason":"close","dest_class":"local","host":"model.local"}
{"ts":"2026-11-22T08:00:00.700000000Z","kind":"connect","session":"00000000000000aa","pid":14,"comm":"curl","addr":"169.254.169.254","port":80,"proto":"tcp","result":"EPERM","rule":"cloud-metadata","action":"deny","outcome":"denied","alert":true,"rules":["cloud-metadata"]}
{"ts":"2026-11-22T08:00:00.750000000Z","kind":"limit","session":"00000000000000aa","pid":10,"comm":"agent","reason":"rate","dropped":5,"dropped_total":5}
{"ts":"2026-11-22T08:00:02.500000000Z","kind":"session_end","session":"00000000000000aa","pid":10,"comm":"agent","root_pid":10,"stragglers":[15],"killed":[15]}
{"ts":"2026-11-22T08:00:02.600000000Z","kind":"flow","session":"00000000000000aa","pid":10,"comm":"agent","addr":"127.0.0.1","port":8443,"proto":"tcp","bytes_out":1048700,"bytes_in":40000,"flow_id":"1-2","reason":"close","dest_class":"local","host":"model.local","tainted":true,"tainted_by":["/home/alice/repo/.env"]}
{"ts":"2026-11-22T08:00:03.000000000Z","kind":"exec","session":"00000000000000bb","pid":20,"comm":"other","exe":"/usr/bin/other","argv":["other"],"root":true}
"#;

fn report() -> Report {
    from_log(LOG.as_bytes(), "00000000000000aa").expect("a report")
}

#[test]
fn the_report_lists_what_the_session_did_and_nothing_else() {
    let r = report();
    assert_eq!(r.agent.as_deref(), Some("agent"));
    assert_eq!(r.user.as_deref(), Some("alice"));
    assert_eq!(r.workspace.as_deref(), Some("/home/alice/repo"));
    assert_eq!(r.duration_ms, Some(2_500));
    assert_eq!(r.forks, 1);
    let commands: Vec<String> = r.commands.items.iter().map(|c| c.argv.join(" ")).collect();
    assert_eq!(commands, ["agent --task x", "git status"]);

    let paths = |l: &Bounded<FileUse>| -> Vec<(String, u64)> {
        l.items.iter().map(|u| (u.path.clone(), u.opens)).collect()
    };
    assert_eq!(
        paths(&r.read.secrets),
        [
            ("/home/alice/.ssh/id_rsa".to_owned(), 1),
            ("/home/alice/repo/.env".to_owned(), 1)
        ]
    );
    assert_eq!(
        r.read.secrets.items[0].verdicts,
        ["credentials-read: killed"]
    );
    assert_eq!(
        paths(&r.read.workspace),
        [("/home/alice/repo/.git/HEAD".to_owned(), 2)]
    );
    assert_eq!(
        paths(&r.read.outside),
        [("/home/alice/.gitconfig".to_owned(), 1)]
    );
    assert_eq!(r.read.system.items.len(), 1);
    assert_eq!(
        paths(&r.written.workspace),
        [("/home/alice/repo/notes.txt".to_owned(), 1)]
    );

    let dests: Vec<(String, u16, u64, u64)> = r
        .destinations
        .items
        .iter()
        .map(|d| (d.addr.clone(), d.port, d.connects, d.failed))
        .collect();
    assert_eq!(
        dests,
        [
            ("169.254.169.254".to_owned(), 80, 1, 1),
            ("127.0.0.1".to_owned(), 8443, 2, 0),
        ]
    );
    assert_eq!(r.destinations.items[1].host.as_deref(), Some("model.local"));
    // Bytes: each flow's last totals (a repeated record adds nothing), the one
    // closed after the end included.
    let model = &r.destinations.items[1];
    assert_eq!(
        (model.bytes_out, model.bytes_in, model.flows),
        (1_048_800, 40_050, 2)
    );
    assert_eq!(r.destinations.items[0].bytes_out, 0);
    assert_eq!((r.bytes_out, r.bytes_in), (1_048_800, 40_050));

    let violations: Vec<(&str, &str, &str)> = r
        .violations
        .items
        .iter()
        .map(|v| (v.rule.as_str(), v.outcome.as_str(), v.what.as_str()))
        .collect();
    assert_eq!(
        violations,
        [
            ("credentials-read", "killed", "open /home/alice/.ssh/id_rsa"),
            ("dotenv-read", "alerted", "open /home/alice/repo/.env"),
            ("cloud-metadata", "denied", "connect 169.254.169.254:80"),
        ]
    );
    assert_eq!(r.dropped, 5);
    assert_eq!(r.stragglers_killed, [15]);
}

#[test]
fn secrets_read_then_bytes_sent_after_the_first_read() {
    let r = report();
    let s = &r.secret_egress;
    // The SSH key's read was killed before the process saw it: not a secret read.
    let read: Vec<&str> = s.secrets.items.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(read, ["/home/alice/repo/.env"]);
    let sent: Vec<(&str, u16, u64, u64, u64, bool)> = s
        .sent_after
        .items
        .iter()
        .map(|d| {
            (
                d.addr.as_str(),
                d.port,
                d.bytes_out,
                d.attempts,
                d.failed,
                d.tainted,
            )
        })
        .collect();
    // Sorted as destinations are (unnamed first). The model: every flow record after the read (600,000 + 100 + the close's
    // 448,700), not the connects before it; the metadata address: one refused
    // attempt, no bytes.
    assert_eq!(
        sent,
        [
            ("169.254.169.254", 80, 0, 1, 1, false),
            ("127.0.0.1", 8443, 1_048_800, 0, 0, true),
        ]
    );
    let md = markdown(&r);
    assert!(
        md.contains("This session read secret `/home/alice/repo/.env`"),
        "{md}"
    );
    assert!(
        md.contains("it sent 1048800 bytes to model.local (127.0.0.1:8443)/tcp"),
        "{md}"
    );
}

#[test]
fn the_markdown_report_reads_as_the_session_went() {
    insta::assert_snapshot!(markdown(&report()));
}

#[test]
fn the_daemon_and_the_log_give_the_same_report() {
    let mut ledgers = Ledgers::default();
    let mut done = None;
    for line in LOG.lines() {
        let ev: EventLine = serde_json::from_str(line).expect("event");
        let Some(session) = ev.session.clone() else {
            continue;
        };
        if let Some(r) = ledgers.add(&session, &ev) {
            done = Some(r);
        }
        if let Some(total) = dropped_total(line) {
            ledgers.dropped(&session, total);
        }
    }
    let done = done.expect("the session ended");
    assert_eq!(done, report());
    // Ended sessions stay asked-for; a prefix finds one.
    assert_eq!(ledgers.get("00000000000000a").expect("kept"), done);
    let running = ledgers.get("00000000000000bb").expect("running");
    assert_eq!(running.commands.items.len(), 1);
    let both = ledgers.get("0000").expect_err("ambiguous");
    assert!(both.contains("2 sessions"), "{both}");
    assert!(ledgers.get("ff").is_err());
}

#[test]
fn lists_stop_at_their_bound_and_count_the_rest() {
    let mut ledger = Ledger::new("s");
    for i in 0..MAX_ITEMS + 7 {
        let line = format!(
            r#"{{"ts":"2026-11-22T08:00:00Z","kind":"open","session":"s","pid":1,"comm":"x","path":"/tmp/f{i}","access":["read"],"result":"ok"}}"#
        );
        ledger.add(&serde_json::from_str(&line).expect("event"));
    }
    let r = ledger.report();
    assert_eq!(r.read.outside.items.len(), MAX_ITEMS);
    assert_eq!(r.read.outside.omitted, 7);
    assert!(markdown(&r).contains("…and 7 more files"));
}

#[test]
fn a_log_line_that_is_not_an_event_is_an_error_with_its_line() {
    let err = from_log("{\"kind\":\"exec\"}\nnot json\n".as_bytes(), "aa").expect_err("bad");
    assert!(err.starts_with("line 2:"), "{err}");
    let err = from_log(LOG.as_bytes(), "cc").expect_err("absent");
    assert!(err.contains("no event"), "{err}");
}

#[test]
fn files_are_written_whole_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("reports");
    let r = report();
    let md = write_files(&out, &r).expect("written");
    assert_eq!(md, out.join("00000000000000aa.md"));
    let json = std::fs::read_to_string(out.join("00000000000000aa.json")).expect("json");
    let back: Report = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, r);
    assert_eq!(std::fs::read_to_string(md).expect("md"), markdown(&r));
    let page = std::fs::read_to_string(out.join("00000000000000aa.html")).expect("html");
    assert_eq!(page, html::render(&r));
    // Nothing left aside.
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// `guard run` as root, `setpriv` dropping to alice, then the agent: the report is
/// the agent's and alice's while the session runs, and at its end.
#[test]
fn a_wrapper_that_drops_privileges_leaves_the_report_to_the_agent_and_its_user() {
    let log = r#"{"ts":"2026-11-22T08:00:00.000000000Z","kind":"session_start","session":"00000000000000cc","pid":10,"ppid":1,"comm":"guard","user":"root","agent":"setpriv","root_pid":10,"how":"run","cwd":"/src"}
{"ts":"2026-11-22T08:00:00.100000000Z","kind":"exec","session":"00000000000000cc","pid":10,"ppid":1,"comm":"setpriv","user":"root","role":"wrapper","exe":"/usr/bin/setpriv","argv":["setpriv","--reuid=1000","my-agent"],"root":true}
{"ts":"2026-11-22T08:00:00.200000000Z","kind":"exec","session":"00000000000000cc","pid":10,"ppid":1,"comm":"my-agent","user":"alice","role":"agent","exe":"/opt/my-agent","argv":["my-agent"],"root":true}
{"ts":"2026-11-22T08:00:00.300000000Z","kind":"fork","session":"00000000000000cc","pid":10,"comm":"my-agent","child_pid":11}
{"ts":"2026-11-22T08:00:00.400000000Z","kind":"exec","session":"00000000000000cc","pid":11,"ppid":10,"comm":"sudo","user":"root","role":"tool","exe":"/usr/bin/sudo","argv":["sudo","id"],"root":false}
"#;
    let running = from_log(log.as_bytes(), "00000000000000cc").expect("a report");
    assert_eq!(
        (running.agent.as_deref(), running.user.as_deref()),
        (Some("my-agent"), Some("alice"))
    );
    let ended = format!(
        "{log}{}\n",
        r#"{"ts":"2026-11-22T08:00:01.000000000Z","kind":"session_end","session":"00000000000000cc","pid":10,"comm":"my-agent","root_pid":10,"stragglers":[],"killed":[],"agent":"claude-code","agent_user":"alice"}"#
    );
    let ended = from_log(ended.as_bytes(), "00000000000000cc").expect("a report");
    assert_eq!(
        (ended.agent.as_deref(), ended.user.as_deref()),
        (Some("claude-code"), Some("alice"))
    );
}

#[test]
fn the_sarif_log_has_one_result_per_violation_at_the_file_it_was_about() {
    let r = report();
    let log = sarif::render(&r);
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "guard");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(rules, ["credentials-read", "dotenv-read", "cloud-metadata"]);
    let results = run["results"].as_array().expect("results");
    let summary: Vec<(&str, &str)> = results
        .iter()
        .map(|x| {
            (
                x["ruleId"].as_str().expect("rule"),
                x["level"].as_str().expect("level"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("credentials-read", "error"),
            ("dotenv-read", "warning"),
            ("cloud-metadata", "error")
        ]
    );
    // The .env of the repository: a file of it, relative to its top directory.
    let at = &results[1]["locations"][0]["physicalLocation"];
    assert_eq!(at["artifactLocation"]["uri"], ".env");
    assert_eq!(at["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(
        run["originalUriBaseIds"]["SRCROOT"]["uri"],
        "file:///home/alice/repo/"
    );
    // A key outside it and a connect: the process that did it.
    for i in [0, 2] {
        let logical = &results[i]["locations"][0]["logicalLocations"][0];
        assert_eq!(logical["kind"], "process", "{logical}");
        assert!(results[i]["locations"][0]["physicalLocation"].is_null());
    }
    assert_eq!(
        results[0]["message"]["text"],
        "cat (pid 12): open /home/alice/.ssh/id_rsa broke credentials-read: kill (killed)"
    );
}
