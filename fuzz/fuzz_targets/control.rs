//! The control protocol's readers, line by line as they read the socket: the
//! daemon's request reader, the clients' answer readers, and the event line
//! renderers of `guard events` and `guard top`.
#![no_main]

use guard::cli::clients;
use guard::top::state;
use guard_common::line::EventLine;
use guard_common::protocol::{KillReport, Registered, Reply, Request, SessionInfo, Status};
use libfuzzer_sys::fuzz_target;

fn answer<T: serde::de::DeserializeOwned>(line: &str) {
    let _ = serde_json::from_str::<Reply<T>>(line);
}

fuzz_target!(|bytes: &[u8]| {
    for line in bytes.split(|b| *b == b'\n') {
        // The server and clients read with `lines()`/`read_line` into a String.
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(request) = serde_json::from_str::<Request>(line) {
            // What the daemon accepts, it can write back (clients send the same).
            let again = serde_json::to_string(&request).expect("a parsed request serialises");
            assert!(serde_json::from_str::<Request>(&again).is_ok(), "{again}");
        }
        answer::<Status>(line);
        answer::<Vec<SessionInfo>>(line);
        answer::<KillReport>(line);
        answer::<Registered>(line);
        if let Ok(ev) = serde_json::from_str::<EventLine>(line) {
            let _ = ev.what();
            let _ = ev.attempt();
            let _ = clients::human(&ev);
            let _ = state::Event::from_line(&ev);
        }
    }
});
