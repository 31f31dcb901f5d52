//! Arbitrary text as a key registry file, and arbitrary bytes as a
//! certificate or public key whose fingerprint `frontdoor keys` computes.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = frontdoor::registry::Registry::parse(Path::new("/nonexistent/keys.yaml"), text);
        let _ = text.parse::<frontdoor::registry::Fingerprint>();
    }
    if let Ok(spki) = frontdoor::registry::spki_from_cert_der(data) {
        let _ = frontdoor::registry::check_key_acceptable(&spki);
        let _ = frontdoor::registry::fingerprint_spki(&spki);
    }
    let _ = frontdoor::registry::keys::public_key_from_bytes(data);
    let _ = frontdoor::tls::client_key::spki_of(data);
    let _ = frontdoor::tls::client_hello::peek(data);
});
