//! Arbitrary bytes as what an SMTP server answers to the front door's
//! XCLIENT prelude or to the smarthost relay, through the one reply parser
//! `smtp_reply::parse_reply`: a complete reply is exactly the bytes it
//! claims, parses again the same from those bytes alone, and the same reply
//! is found when the bytes arrive in pieces.
#![no_main]

use frontdoor::smtp_reply::{parse_reply, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_reply(data);
    if let Ok(Parsed::Complete(reply, n)) = &whole {
        assert!(*n > 0 && *n <= data.len());
        assert_eq!(reply.raw, &data[..*n]);
        assert!(reply.code <= 999);
        assert!(!reply.lines.is_empty());
        assert_eq!(reply.raw.last(), Some(&b'\n'));
        assert_eq!(parse_reply(&data[..*n]), whole);
    }
    // Fed the way a socket delivers it: call again on longer prefixes
    // until a verdict; it must be the verdict on the whole input (once the
    // reply is complete, bytes after it do not matter).
    // A verdict can only change at a line end or at the end of the input;
    // a sample of at most 64 line ends keeps long inputs fast.
    let ends: Vec<usize> = (0..data.len())
        .filter(|&i| data[i] == b'\n')
        .map(|i| i + 1)
        .collect();
    let step = (ends.len() / 64).max(1);
    let cuts = ends.iter().step_by(step).copied().chain([data.len()]);
    let mut verdict = None;
    for k in cuts {
        match parse_reply(&data[..k]) {
            Ok(Parsed::Incomplete) => continue,
            r => {
                verdict = Some((k, r));
                break;
            }
        }
    }
    match verdict {
        None => assert_eq!(whole, Ok(Parsed::Incomplete)),
        Some((_, Ok(Parsed::Complete(r, n)))) => {
            assert_eq!(whole, Ok(Parsed::Complete(r, n)))
        }
        Some((k, Err(_))) => assert!(whole.is_err(), "refused at {k} bytes, accepted whole"),
        Some((_, Ok(Parsed::Incomplete))) => unreachable!(),
    }
});
