//! Policy files: any text gets a policy or diagnostics, never a panic; a policy that
//! parses also compiles (matchers and the kernel's rule tables) and its diagnostics
//! render, as `guard policy check` and the daemon do.
#![no_main]

use guard_policy::{diag, judge::Judge, matcher::Hosts, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match parse::parse("fuzz.toml", text) {
        Ok((policy, warnings)) => {
            let _ = diag::render("fuzz.toml", &warnings);
            let homes = vec!["/root".to_owned(), "/home/dev".to_owned()];
            for lsm in [false, true] {
                let _ = Judge::new(
                    policy.clone(),
                    homes.clone(),
                    Hosts::default(),
                    guard_policy::judge::Kernel {
                        lsm,
                        exec_mapping: true,
                    },
                );
            }
        }
        Err(diags) => {
            let _ = diag::render("fuzz.toml", &diags);
        }
    }
});
