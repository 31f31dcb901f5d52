//! Arbitrary bytes as the start of a backend connection.
#![no_main]

use frontdoor::proxy_protocol::{decode, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Complete { len, .. }) = decode(data) {
        assert!(len <= data.len());
    }
});
