//! Arbitrary bytes as a stored message: structure, ENVELOPE,
//! BODYSTRUCTURE/BODY encoding and section extraction.
#![no_main]

use frontdoor::mail::imap::mime::{self, Envelope};
use frontdoor::mail::imap::parser::{Section, SectionText};
use frontdoor::mail::imap::response::{write_body, write_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let root = mime::parse(raw);
    assert!(root.header.end <= raw.len() && root.body.end <= raw.len());
    let env = Envelope::from_header(&raw[root.header.clone()]);
    let mut out = Vec::new();
    write_envelope(&mut out, &env);
    write_body(&mut out, raw, &root, true, 0);
    write_body(&mut out, raw, &root, false, 0);
    let texts = [
        None,
        Some(SectionText::Header),
        Some(SectionText::Text),
        Some(SectionText::Mime),
        Some(SectionText::HeaderFields(vec!["From".into(), "Subject".into()])),
        Some(SectionText::HeaderFieldsNot(vec!["Received".into()])),
    ];
    for part in [vec![], vec![1], vec![2], vec![1, 1], vec![1, 2], vec![2, 1, 3], vec![u32::MAX]] {
        for text in &texts {
            let s = Section { part: part.clone(), text: text.clone() };
            if let Some(d) = mime::section(raw, &root, &s) {
                let _ = mime::partial(&d, 3, 7);
            }
        }
    }
    let _ = mime::header_value(raw, b"content-type");
});
