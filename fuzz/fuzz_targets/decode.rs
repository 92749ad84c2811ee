//! Ring-buffer records: whatever bytes arrive, the decoder answers with a record or
//! an error, and a decoded record becomes an event and a JSON line without a panic
//! (the daemon does exactly this with every record the kernel hands over).
#![no_main]

use guard::event::{Written as _, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(record) = decode::decode(bytes) else {
        return;
    };
    if let decode::Body::Exec { argv, .. } = &record.body {
        let _ = decode::split_argv(argv);
    }
    let _ = decode::comm(&record.header.comm);
    let event = guard::event::from_record(record, 0);
    let _ = event.to_json();
});
