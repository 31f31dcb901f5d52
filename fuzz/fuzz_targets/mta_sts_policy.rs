//! Arbitrary bytes as an MTA-STS policy body and as `_mta-sts` TXT records,
//! through the delivery worker's parsers
//! (`frontdoor::mail::delivery::mta_sts::policy`), with their contract
//! checked: they never panic; an accepted policy has a bounded `max_age`,
//! at most the bounded number of lower-case patterns and an `mx` unless its
//! mode is `none`; an accepted record id is 1 to 32 letters and digits.
#![no_main]

use frontdoor::mail::delivery::mta_sts::policy::{
    mx_matches, parse, record_id, Mode, MAX_AGE_LIMIT, MAX_MX_PATTERNS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse(data) {
        assert!(p.max_age.as_secs() <= MAX_AGE_LIMIT);
        assert!(p.mx.len() <= MAX_MX_PATTERNS);
        assert!(p.mode == Mode::None || !p.mx.is_empty());
        for m in &p.mx {
            assert_eq!(*m, m.to_ascii_lowercase());
            let host = m.strip_prefix("*.").unwrap_or(m);
            assert!(mx_matches(host, host));
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(Some(id)) = record_id(text.split('\n')) {
        assert!((1..=32).contains(&id.len()));
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
});
