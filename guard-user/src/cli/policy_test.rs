//! `guard policy test`: recorded events judged again by a policy
//! (guard_policy::replay), to review a change before it is rolled out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::policy;

/// `guard policy test`: the logs' events judged again by `file`'s policy.
pub fn run(file: &Path, logs: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let policy = match policy::load(&policy::Source::from_arg(Some(file))) {
        Ok((p, _)) => p,
        Err(policy::LoadError::Invalid {
            rendered, errors, ..
        }) => {
            print!("{rendered}");
            eprintln!("guard: policy {} has {errors} error(s)", file.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let mut lines = Vec::new();
    // Lines that are no event: named, never skipped silently.
    let mut bad: Vec<String> = Vec::new();
    for log in logs {
        let mut text = String::new();
        if log.as_os_str() == "-" {
            std::io::stdin().read_to_string(&mut text)
        } else {
            std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text))
        }
        .with_context(|| format!("cannot read {}", log.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match serde_json::from_str::<guard_common::line::EventLine>(line) {
                Ok(l) => lines.push(l),
                Err(e) => bad.push(format!("{}:{}: {e}", log.display(), n + 1)),
            }
        }
    }
    let report = policy::replay::replay(policy, &lines)
        .map_err(|e| anyhow::anyhow!("the policy does not compile: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", policy::replay::table(&report));
    }
    for b in bad.iter().take(10) {
        eprintln!("guard: not an event: {b}");
    }
    if !bad.is_empty() {
        eprintln!(
            "guard: {} line(s) are no event and were not replayed",
            bad.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let changed = report.rules.iter().any(|r| r.change() != "same");
    Ok(if changed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
