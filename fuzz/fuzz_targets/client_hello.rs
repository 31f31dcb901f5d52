//! Arbitrary bytes as the start of a TLS stream, through the ClientHello
//! peeker (`tls::client_hello::peek`), with its contract checked: a prefix
//! of the input never reaches a verdict the whole input contradicts (a
//! Hello on a prefix is the Hello of the whole; an error on a prefix stays
//! an error), and what it reports is what it was given.
#![no_main]

use frontdoor::tls::client_hello::{peek, Peeked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = peek(data);
    if let Ok(Peeked::Hello(h)) = &full {
        if let Some(sni) = &h.sni {
            assert_eq!(*sni, sni.to_ascii_lowercase());
        }
        assert!(h.alpn.iter().all(|p| !p.is_empty() && p.len() < 256));
    }
    // A few cut points spread over the input (all of them for short ones).
    let step = (data.len() / 64).max(1);
    for k in (0..data.len()).step_by(step) {
        match peek(&data[..k]) {
            Ok(Peeked::NeedMore) => {}
            Ok(Peeked::Hello(h)) => {
                assert_eq!(
                    full,
                    Ok(Peeked::Hello(h)),
                    "a prefix of {k} bytes disagrees"
                )
            }
            Err(_) => assert!(full.is_err(), "a prefix of {k} bytes was refused"),
        }
    }
});
