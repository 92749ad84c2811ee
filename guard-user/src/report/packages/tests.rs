//! An install session's events, as the audit log holds them, folded into its
//! packages and their scripts.

use super::super::from_log;

/// The audit log of a session in `ws`: `npm install` (pid 20) fetches from the
/// registry and writes two packages' manifests (one of them still on disk) and a file
/// of a package's tree; `evil`'s postinstall script (pid 21, then its child 22) reads
/// an SSH key, killed, and connects out; the project's own `npm run build` script (pid
/// 30) runs; pip (pid 40) installs a wheel.
fn log(ws: &str) -> String {
    let lines = [
        r#"{"ts":"2026-11-27T08:00:00.000000000Z","kind":"session_start","session":"aa","pid":10,"ppid":1,"comm":"agent","agent":"agent","root_pid":10,"how":"run","cwd":"WS"}"#,
        r#"{"ts":"2026-11-27T08:00:00.100000000Z","kind":"exec","session":"aa","pid":20,"ppid":10,"comm":"npm","exe":"/usr/bin/node","argv":["npm","install","./evil-1.0.0.tgz"]}"#,
        r#"{"ts":"2026-11-27T08:00:00.150000000Z","kind":"flow","session":"aa","pid":20,"comm":"npm","addr":"10.0.0.5","port":443,"proto":"tcp","bytes_out":10,"bytes_in":10,"flow_id":"1-2","reason":"close","dest_class":"registry","host":"registry.npmjs.org"}"#,
        r#"{"ts":"2026-11-27T08:00:00.200000000Z","kind":"open","session":"aa","pid":20,"comm":"npm","path":"WS/node_modules/evil/package.json","access":["write","create"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:00.210000000Z","kind":"open","session":"aa","pid":20,"comm":"npm","path":"WS/node_modules/evil/lib/package.json","access":["write","create"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:00.220000000Z","kind":"open","session":"aa","pid":20,"comm":"npm","path":"WS/node_modules/@gone/away/package.json","access":["write","create"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:00.230000000Z","kind":"open","session":"aa","pid":20,"comm":"npm","path":"WS/node_modules/evil/package.json","access":["write","truncate"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:00.300000000Z","kind":"exec","session":"aa","pid":21,"ppid":20,"comm":"sh","package":"evil","exe":"/usr/bin/dash","argv":["sh","-c","node postinstall.js"]}"#,
        r#"{"ts":"2026-11-27T08:00:00.310000000Z","kind":"fork","session":"aa","pid":21,"comm":"sh","package":"evil","child_pid":22}"#,
        r#"{"ts":"2026-11-27T08:00:00.320000000Z","kind":"exec","session":"aa","pid":22,"ppid":21,"comm":"node","package":"evil","exe":"/usr/bin/node","argv":["node","postinstall.js"]}"#,
        r#"{"ts":"2026-11-27T08:00:00.330000000Z","kind":"open","session":"aa","pid":22,"comm":"node","package":"evil","path":"WS/node_modules/evil/postinstall.js","access":["read"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:00.340000000Z","kind":"open","session":"aa","pid":22,"comm":"node","package":"evil","path":"/home/alice/.ssh/id_rsa","access":["read"],"result":"ok","rule":"credentials-read","action":"kill","outcome":"killed","alert":true,"rules":["credentials-read"],"secret":true}"#,
        r#"{"ts":"2026-11-27T08:00:00.335000000Z","kind":"connect","session":"aa","pid":22,"comm":"node","package":"evil","addr":"127.0.0.1","port":9,"proto":"tcp","result":"ECONNREFUSED"}"#,
        r#"{"ts":"2026-11-27T08:00:00.400000000Z","kind":"exec","session":"aa","pid":30,"ppid":10,"comm":"sh","package":"app","exe":"/usr/bin/dash","argv":["sh","-c","tsc"]}"#,
        r#"{"ts":"2026-11-27T08:00:00.500000000Z","kind":"exec","session":"aa","pid":40,"ppid":10,"comm":"pip","exe":"/v/bin/python3","argv":["/v/bin/python3","/v/bin/pip","install","./good-2.1-py3-none-any.whl"]}"#,
        r#"{"ts":"2026-11-27T08:00:00.510000000Z","kind":"open","session":"aa","pid":40,"comm":"pip","path":"/v/lib/python3.11/site-packages/good-2.1.dist-info/METADATA","access":["write","create"],"result":"ok"}"#,
        r#"{"ts":"2026-11-27T08:00:01.000000000Z","kind":"session_end","session":"aa","pid":10,"comm":"agent","root_pid":10}"#,
    ];
    lines.join("\n").replace("WS", ws)
}

#[test]
fn an_install_s_packages_and_its_scripts_are_the_session_s_story() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().to_str().unwrap();
    std::fs::create_dir_all(dir.path().join("node_modules/evil")).unwrap();
    std::fs::write(
        dir.path().join("node_modules/evil/package.json"),
        r#"{"name":"evil","version":"1.0.0","scripts":{"postinstall":"node postinstall.js"}}"#,
    )
    .unwrap();
    let r = from_log(log(ws).as_bytes(), "aa").unwrap();

    let packages: Vec<_> = r
        .packages
        .items
        .iter()
        .map(|p| {
            (
                p.ecosystem.as_str(),
                p.name.as_str(),
                p.version.as_deref(),
                p.note.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        packages,
        [
            ("npm", "evil", Some("1.0.0"), None),
            ("npm", "@gone/away", None, Some("manifest gone")),
            ("pypi", "good", Some("2.1"), None),
        ]
    );
    let evil = &r.packages.items[0];
    assert_eq!(evil.pid, 20);
    assert_eq!(
        evil.command.as_deref(),
        Some("npm install ./evil-1.0.0.tgz")
    );
    assert_eq!(evil.registries, ["registry.npmjs.org"]);
    assert_eq!(evil.ts, "2026-11-27T08:00:00.200000000Z");
    assert!(
        r.packages.items[2].registries.is_empty(),
        "pip installed a local file"
    );

    let scripts: Vec<_> = r
        .scripts
        .items
        .iter()
        .map(|s| (s.package.as_str(), s.install, s.pid, s.execs))
        .collect();
    assert_eq!(scripts, [("evil", true, 21, 2), ("app", false, 30, 1)]);
    let post = &r.scripts.items[0];
    assert_eq!(post.command, "sh -c node postinstall.js");
    assert_eq!((post.reads, post.writes), (2, 0));
    assert_eq!(post.secrets, ["/home/alice/.ssh/id_rsa"]);
    assert_eq!(post.destinations, ["127.0.0.1:9"]);
    assert_eq!(post.verdicts, ["credentials-read: killed"]);

    let md = super::super::markdown(&r);
    assert!(md.contains("## Packages installed"), "{md}");
    assert!(
        md.contains(
            "| evil | 1.0.0 | npm | registry.npmjs.org | `npm install ./evil-1.0.0.tgz` (pid 20) |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| @gone/away | ? (manifest gone) | npm |"),
        "{md}"
    );
    assert!(md.contains("## Package scripts that ran"), "{md}");
    assert!(
        md.contains("| evil | **install** | `sh -c node postinstall.js` (pid 21) | 2 | 2 | 0 | /home/alice/.ssh/id_rsa | 127.0.0.1:9 | credentials-read: killed |"),
        "{md}"
    );
}

#[test]
fn a_summary_keeps_its_first_packages_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let r = from_log(log(dir.path().to_str().unwrap()).as_bytes(), "aa").unwrap();
    let s = r.summary(1);
    assert_eq!(s.packages.items.len(), 1);
    assert_eq!(s.packages.omitted, 2);
    assert_eq!(s.scripts.items.len(), 1);
    assert_eq!(s.scripts.omitted, 1);
}
