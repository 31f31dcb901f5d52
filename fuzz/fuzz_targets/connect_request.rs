//! Arbitrary bytes as the head of an HTTP CONNECT request, through the
//! tunnel entry's parser (`frontdoor::connect::parse`), with its contract
//! checked: it never panics; what it accepts ends in a port of digits, an IP literal has
//! no host and a host is lower case without a trailing dot; the logged
//! target of a refused head is bounded.
#![no_main]

use frontdoor::frontdoor::connect::{parse, raw_target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(req) => {
            let (_, port) = req.target.rsplit_once(':').unwrap();
            assert!(port.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(port.parse::<u16>().ok(), Some(req.port));
            if let Some(h) = &req.host {
                assert_eq!(*h, h.to_ascii_lowercase());
                assert!(!h.ends_with('.') && !h.is_empty());
                assert!(h.parse::<std::net::IpAddr>().is_err());
            }
        }
        Err(e) => {
            assert!(e.reply().starts_with(b"HTTP/1.1 "));
            assert!(raw_target(data).len() <= 4 * 512);
        }
    }
});
