//! Unit tests of the command parser: shared helpers and the framing paths
//! (literals split across reads, BAD and need-more, limits, AUTHENTICATE
//! and IDLE lines); the RFC 3501 examples and the commands real clients send
//! are in the files beside this one.

mod clients;
mod rfc3501;

use super::*;
use crate::mail::imap::sequence::SeqNum;
use CommandBody as C;

fn lim() -> Limits {
    Limits::default()
}

/// Parse a whole command; it must be complete and use every byte.
fn cmd(s: &str) -> Command {
    match parse_command(s.as_bytes(), &lim()) {
        Parsed::Complete { command, consumed } => {
            assert_eq!(consumed, s.len(), "{s:?}");
            command
        }
        other => panic!("{s:?}: {other:?}"),
    }
}

fn body(s: &str) -> CommandBody {
    cmd(s).body
}

fn set(s: &str) -> SeqSet {
    SeqSet::parse(s.as_bytes()).unwrap()
}

fn bad(s: &str) -> (Option<String>, String, usize) {
    match parse_command(s.as_bytes(), &lim()) {
        Parsed::Bad {
            tag,
            reason,
            consumed,
        } => (tag, reason, consumed),
        other => panic!("{s:?}: {other:?}"),
    }
}

#[test]
fn literals_split_across_reads() {
    let full = b"x LOGIN {5}\r\nalice {6+}\r\nsecret\r\n";
    let mut acked = Vec::new();
    let mut result = None;
    for n in 0..=full.len() {
        match parse_command(&full[..n], &lim()) {
            Parsed::NeedMore => {}
            Parsed::NeedLiteral { size, sync, at } => {
                if sync && !acked.contains(&at) {
                    acked.push(at);
                }
                assert!(size == 5 || size == 6);
            }
            Parsed::Complete { command, consumed } => {
                assert_eq!(n, full.len());
                assert_eq!(consumed, full.len());
                result = Some(command);
            }
            other => panic!("{n}: {other:?}"),
        }
    }
    // One continuation, for the synchronising literal only.
    assert_eq!(acked, vec![13]);
    assert_eq!(
        result.unwrap().body,
        C::Login {
            user: b"alice".to_vec(),
            password: b"secret".to_vec()
        }
    );
}

#[test]
fn bad_and_need_more_paths() {
    assert_eq!(parse_command(b"", &lim()), Parsed::NeedMore);
    assert_eq!(parse_command(b"a001 NOO", &lim()), Parsed::NeedMore);
    assert_eq!(parse_command(b"a001 NOOP\r", &lim()), Parsed::NeedMore);
    // Bare LF accepted as a line end.
    assert!(matches!(
        parse_command(b"a NOOP\n", &lim()),
        Parsed::Complete { consumed: 7, .. }
    ));
    // No tag.
    assert_eq!(bad("\r\n"), (None, "missing tag".into(), 2));
    assert_eq!(bad("+ NOOP\r\n").0, None);
    // Syntax error drops exactly the bad line; the next command survives.
    let two = b"a1 FETCH x\r\na2 NOOP\r\n";
    match parse_command(two, &lim()) {
        Parsed::Bad { tag, consumed, .. } => {
            assert_eq!(tag.as_deref(), Some("a1"));
            assert_eq!(consumed, 12);
            assert!(matches!(
                parse_command(&two[consumed..], &lim()),
                Parsed::Complete {
                    command: Command { body: C::Noop, .. },
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
    // Error before a non-synchronising literal: its data is skipped too.
    let s = b"a1 FOO {3+}\r\nabc more\r\na2 NOOP\r\n";
    match parse_command(s, &lim()) {
        Parsed::Bad { consumed, .. } => assert_eq!(&s[consumed..], b"a2 NOOP\r\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_command(b"a1 FOO {3+}\r\nab", &lim()),
        Parsed::NeedMore
    );
    // Error before a synchronising literal: the client waits, so stop there.
    assert_eq!(bad("a1 FOO {3}\r\n").2, 12);
    // Trailing garbage.
    assert_eq!(bad("a NOOP x\r\n").0.as_deref(), Some("a"));
    assert_eq!(bad("a SELECT\r\n").0.as_deref(), Some("a"));
    assert_eq!(bad("a LOGIN \"unterminated\r\n").2, 23);
    assert_eq!(bad("a LOGIN \"bad\\escape\" x\r\n").0.as_deref(), Some("a"));
}

#[test]
fn limits_hold() {
    let small = Limits {
        max_line: 64,
        max_literal: 10,
        max_append: 100,
        max_items: 5,
        ..Limits::default()
    };
    // A line too long with no end: fatal, nothing buffered forever.
    let long = vec![b'a'; 100];
    assert!(matches!(parse_command(&long, &small), Parsed::Fatal { .. }));
    // A complete but too long line: BAD, skipped.
    let mut l = b"a NOOP ".to_vec();
    l.extend(vec![b'x'; 80]);
    l.extend(b"\r\n");
    assert!(
        matches!(parse_command(&l, &small), Parsed::Bad { consumed, .. } if consumed == l.len())
    );
    // A sync literal over the limit: BAD [TOOBIG] before any data comes.
    match parse_command(b"a LOGIN {11}\r\n", &small) {
        Parsed::Bad {
            tag,
            reason,
            consumed,
        } => {
            assert_eq!(tag.as_deref(), Some("a"));
            assert!(reason.starts_with("[TOOBIG]"));
            assert_eq!(consumed, 14);
        }
        other => panic!("{other:?}"),
    }
    // APPEND has its own, larger limit.
    assert!(matches!(
        parse_command(b"a APPEND x {100}\r\n", &small),
        Parsed::NeedLiteral { size: 100, .. }
    ));
    assert!(matches!(
        parse_command(b"a APPEND x {101}\r\n", &small),
        Parsed::Bad { .. }
    ));
    // A non-sync literal over the limit: the bytes are coming anyway.
    assert!(matches!(
        parse_command(b"a APPEND x {101+}\r\n", &small),
        Parsed::Fatal { .. }
    ));
    // A claimed 2^63 literal is refused, nothing allocated.
    assert!(matches!(
        parse_command(b"a APPEND x {9223372036854775807}\r\n", &lim()),
        Parsed::Bad { .. }
    ));
    assert!(bad("a APPEND x {99999999999999999999}\r\n")
        .1
        .contains("number"));
    // Item counts.
    assert!(matches!(
        parse_command(b"a STORE 1 FLAGS (a b c d e f)\r\n", &small),
        Parsed::Bad { reason, .. } if reason.contains("too many")
    ));
}

#[test]
fn auth_and_idle_lines() {
    assert_eq!(parse_auth_line(b"AGEAYg==", &lim()), AuthLine::NeedMore);
    assert_eq!(
        parse_auth_line(b"AGEAYg==\r\nrest", &lim()),
        AuthLine::Response {
            data: b"\0a\0b".to_vec(),
            consumed: 10
        }
    );
    assert_eq!(
        parse_auth_line(b"\r\n", &lim()),
        AuthLine::Response {
            data: vec![],
            consumed: 2
        }
    );
    assert_eq!(
        parse_auth_line(b"*\r\n", &lim()),
        AuthLine::Cancel { consumed: 3 }
    );
    assert_eq!(
        parse_auth_line(b"!!\r\n", &lim()),
        AuthLine::Bad { consumed: 4 }
    );
    assert_eq!(
        sasl_plain(b"\0alice@example.org\0pw"),
        Some((vec![], b"alice@example.org".to_vec(), b"pw".to_vec()))
    );
    assert_eq!(sasl_plain(b"alice\0pw"), None);
    assert_eq!(parse_idle_done(b"DON", &lim()), IdleEnd::NeedMore);
    assert_eq!(
        parse_idle_done(b"done\r\n", &lim()),
        IdleEnd::Done { consumed: 6 }
    );
    assert_eq!(
        parse_idle_done(b"a NOOP\r\n", &lim()),
        IdleEnd::Bad { consumed: 8 }
    );
}

#[test]
fn seq_star_forms() {
    match body("a UID FETCH * UID\r\n") {
        C::Fetch { set, .. } => assert_eq!(set.ranges, vec![(SeqNum::Star, SeqNum::Star)]),
        other => panic!("{other:?}"),
    }
}
