//! Arbitrary bytes as a message through the chatmail encryption rule (both
//! directions), the OpenPGP packet and armor checks, and the header cleanup:
//! none may panic, and cleaning is idempotent.
#![no_main]

use frontdoor::mail::chatmail::{filter, openpgp, privacy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rcpts = ["bob@example.org".to_string()];
    let senders = ["@example.com".to_string()];
    let pass = filter::Passthrough {
        senders: &senders,
        recipients: &[],
    };
    let _ = filter::check_outgoing(pass, "alice@example.org", &rcpts, data);
    let _ = filter::check_incoming(data);
    let _ = openpgp::check_packets(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = openpgp::check_armored(text, true);
        let _ = openpgp::check_armored(text, false);
    }
    let once = privacy::clean_submission(data);
    assert_eq!(privacy::clean_submission(&once), once);
    let stored = privacy::clean_stored(data);
    assert_eq!(privacy::clean_stored(&stored), stored);
});
