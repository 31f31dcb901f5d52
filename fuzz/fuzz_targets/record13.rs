//! `record13` open and seal after a real TLS 1.3 handshake (every suite it
//! protects), against rustls' own record layer: fuzzed record streams —
//! application data of every size up to the limits and past them, padding,
//! alerts of any level, KeyUpdates (asked for or not, malformed), other
//! handshake bytes, inner plaintexts without a content type, wrong
//! headers, lengths and flipped ciphertext bytes, unprotected bytes —
//! delivered in arbitrary pieces, interleaved with data the server seals.
//! `common/records.rs` says what must agree.
#![no_main]

#[path = "../common/records.rs"]
mod records;
#[path = "../common/tls_pair.rs"]
#[allow(dead_code)]
mod tls_pair;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (suite, ops) = records::generate(&mut records::Input(data));
    if ops.is_empty() {
        return;
    }
    let _ = records::differential(suite, &ops);
});
