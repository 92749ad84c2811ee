//! A session's violations as SARIF 2.1.0 (OASIS): what a code host reads to show a
//! tool's findings on a pull request (GitHub's `upload-sarif`). One run, guard as
//! its tool with the rules that were broken, one result per violation. A violation
//! about a file of the session's repository points at that file (relative to the
//! repository's top directory, `%SRCROOT%`); the others name the process
//! (a logical location): a code host that needs a file for every result shows
//! those in its list, not on a line.

use serde_json::{Value, json};

use super::{Report, Violation};

/// The schema a SARIF 2.1.0 log names.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// SARIF's level for what the rule asked: a kill or a deny is an error, an alert a
/// warning, a log a note.
fn level(action: &str) -> &'static str {
    match action {
        "kill" | "deny" => "error",
        "alert" => "warning",
        _ => "note",
    }
}

/// The path of `file` in `repository`'s top directory, when it is in it.
fn in_repository<'p>(file: &'p str, root: &str) -> Option<&'p str> {
    let rest = file.strip_prefix(root)?.strip_prefix('/')?;
    (!rest.is_empty()).then_some(rest)
}

fn result(v: &Violation, root: Option<&str>, session: &str) -> Value {
    let text = format!(
        "{} (pid {}): {} broke {}: {} ({})",
        v.comm, v.pid, v.what, v.rule, v.action, v.outcome
    );
    let file = v
        .path
        .as_deref()
        .zip(root)
        .and_then(|(path, root)| in_repository(path, root));
    let location = match file {
        Some(uri) => json!({
            "physicalLocation": {
                "artifactLocation": {
                    "uri": uri,
                    "uriBaseId": "%SRCROOT%",
                },
                "region": { "startLine": 1 },
            },
        }),
        None => json!({
            "logicalLocations": [{
                "name": v.comm,
                "fullyQualifiedName": format!("session {session}/pid {}", v.pid),
                "kind": "process",
            }],
        }),
    };
    json!({
        "ruleId": v.rule,
        "level": level(&v.action),
        "message": { "text": text },
        "locations": [location],
        "properties": {
            "time": v.ts,
            "session": session,
            "pid": v.pid,
            "program": v.comm,
            "action": v.action,
            "outcome": v.outcome,
            "alert": v.alert,
        },
    })
}

/// The session's violations as a SARIF 2.1.0 log.
pub fn render(r: &Report) -> Value {
    let root = r.repository.as_ref().and_then(|x| x.root.as_deref());
    let mut rules: Vec<&str> = Vec::new();
    for v in &r.violations.items {
        if !rules.contains(&v.rule.as_str()) {
            rules.push(&v.rule);
        }
    }
    let rules: Vec<Value> = rules
        .iter()
        .map(|id| {
            let action = r
                .violations
                .items
                .iter()
                .find(|v| v.rule == *id)
                .map_or("log", |v| v.action.as_str());
            json!({
                "id": id,
                "shortDescription": { "text": format!("guard policy rule {id}") },
                "defaultConfiguration": { "level": level(action) },
            })
        })
        .collect();
    let results: Vec<Value> = r
        .violations
        .items
        .iter()
        .map(|v| result(v, root, &r.session))
        .collect();
    let mut run = json!({
        "tool": {
            "driver": {
                "name": "guard",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            },
        },
        "results": results,
        "properties": {
            "session": r.session,
            "agent": r.agent,
            "violationsOmitted": r.violations.omitted,
        },
    });
    if let Some(root) = root {
        run["originalUriBaseIds"] = json!({ "SRCROOT": { "uri": format!("file://{root}/") } });
    }
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [run],
    })
}
