//! The fleet server's ingest (guard-fleet/src/ingest): a request body as anyone
//! holding a token can send it, in either OTLP/HTTP encoding, gzipped or not,
//! through the decoder and the validation that turns it into rows. Nothing may
//! panic: every body is a batch, or a reason it is refused.
//!
//! The first byte picks how the rest is read: bit 0 JSON (else protobuf), bit 1
//! gzipped, bit 2 sent with a cluster's token (else a host's).
#![no_main]

use guard_fleet::auth::Sender;
use guard_fleet::config::Limits;
use guard_fleet::ingest::{decode, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&how, body)) = bytes.split_first() else {
        return;
    };
    let encoding = if how & 1 == 0 {
        decode::Encoding::Protobuf
    } else {
        decode::Encoding::Json
    };
    // Small bounds, so that a bomb is found out quickly.
    let limits = Limits {
        max_decompressed: 1 << 20,
        max_summary: 64 << 10,
        max_event: 16 << 10,
        ..Limits::default()
    };
    let unzipped;
    let body = if how & 2 == 0 {
        body
    } else {
        let Ok(plain) = decode::gunzip(body, limits.max_decompressed) else {
            return;
        };
        assert!(plain.len() <= limits.max_decompressed);
        unzipped = plain;
        &unzipped[..]
    };
    let Ok(request) = decode::decode(encoding, body) else {
        return;
    };
    let sender = if how & 4 == 0 {
        Sender::Host("build-01".to_owned())
    } else {
        Sender::Cluster("eu".to_owned())
    };
    if let Ok(batch) = validate::batch(&request, &sender, &limits, 1_795_237_200_000) {
        // What is stored is bounded by the limits, whatever was sent.
        for s in &batch.summaries {
            assert!(s.summary.len() <= limits.max_summary, "a summary past its bound");
        }
        for e in &batch.events {
            assert!(e.event.len() <= limits.max_event, "an event past its bound");
        }
    }
    // The answer in the request's own encoding is always well-formed.
    let _ = decode::response(encoding, 1, "fuzz");
});
