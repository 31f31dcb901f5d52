//! Arbitrary bytes through the SMTP command framer and parser, and through
//! the DATA reader (dot-unstuffing, size limit), as a session feeds them.
#![no_main]

use frontdoor::mail::smtp::parser::{parse_command, DataReader, Frame, Framer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    let mut buf = data;
    for _ in 0..10_000 {
        let (frame, used) = framer.next(buf);
        if let Some(Frame::Line(line)) = frame {
            let _ = parse_command(line);
        }
        if used == 0 {
            break;
        }
        buf = &buf[used.min(buf.len())..];
    }
    // The same bytes as message data, fed in uneven pieces.
    let mut reader = DataReader::new(4096);
    let mut rest = data;
    let mut step = 1;
    while !rest.is_empty() {
        let piece = &rest[..step.min(rest.len())];
        let (_, used) = reader.feed(piece);
        rest = &rest[used.max(1).min(rest.len())..];
        step = step % 97 + 3;
    }
    let _ = reader.too_big();
});
