//! Arbitrary bytes through the IMAP command loop the session runs:
//! commands, literals, BAD recovery, AUTHENTICATE and IDLE lines.
#![no_main]

use frontdoor::mail::imap::parser::{
    parse_auth_line, parse_command, parse_idle_done, CommandBody, Limits, Parsed,
};
use frontdoor::mail::imap::search::{self, Mailbox, Message};
use frontdoor::mail::imap::types::Flag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits, so the limit paths are reached too.
    let limits = Limits {
        max_line: 1024,
        max_literal: 256,
        max_append: 4096,
        max_command: 8192,
        max_items: 64,
        max_depth: 8,
    };
    let mut buf = data;
    for _ in 0..10_000 {
        match parse_command(buf, &limits) {
            Parsed::Complete { command, consumed } => {
                assert!(consumed > 0 && consumed <= buf.len());
                // The same command must come out of exactly its own bytes.
                match parse_command(&buf[..consumed], &limits) {
                    Parsed::Complete { command: again, consumed: c2 } => {
                        assert_eq!(c2, consumed);
                        assert_eq!(again, command);
                    }
                    other => panic!("prefix parsed differently: {other:?}"),
                }
                if let CommandBody::Search { criteria, .. } = &command.body {
                    // Evaluate the key on a small message, as the session would.
                    let raw = b"From: a@b\r\nSubject: x\r\nDate: 1 Jan 2024 00:00 +0000\r\n\r\nbody";
                    let m = Message {
                        msn: 1,
                        uid: 7,
                        flags: &[Flag::Seen],
                        internal_date: 1_700_000_000,
                        size: raw.len() as u64,
                        modseq: 3,
                        raw,
                    };
                    let mb = Mailbox { count: 1, max_uid: 7, now: i64::MAX };
                    let _ = search::matches(criteria, &m, &mb);
                    let _ = search::needs_text(criteria);
                }
                buf = &buf[consumed..];
            }
            Parsed::Bad { consumed, .. } => {
                assert!(consumed > 0 && consumed <= buf.len());
                buf = &buf[consumed..];
            }
            Parsed::NeedLiteral { size, at, .. } => {
                assert!(at <= buf.len() && size <= limits.max_append);
                assert!(at + size > buf.len());
                break;
            }
            Parsed::NeedMore | Parsed::Fatal { .. } => break,
        }
    }
    let _ = parse_auth_line(data, &limits);
    let _ = parse_idle_done(data, &limits);
});
