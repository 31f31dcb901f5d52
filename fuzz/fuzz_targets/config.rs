//! Arbitrary text as a configuration file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = frontdoor::config::Config::parse(Path::new("/nonexistent/fuzz.yaml"), text);
    }
});
