//! The examples of RFC 3501, command by command and the §8 sample session.

use super::*;
use crate::mail::imap::types::DateTime;

#[test]
fn rfc3501_any_and_nonauth_state_examples() {
    // §6.1.1 .. §6.2.3
    assert_eq!(
        cmd("a002 CAPABILITY\r\n"),
        Command {
            tag: "a002".into(),
            body: C::Capability
        }
    );
    assert_eq!(body("a002 NOOP\r\n"), C::Noop);
    assert_eq!(body("A023 LOGOUT\r\n"), C::Logout);
    assert_eq!(body("a002 STARTTLS\r\n"), C::StartTls);
    assert_eq!(
        body("A001 AUTHENTICATE GSSAPI\r\n"),
        C::Authenticate {
            mechanism: "GSSAPI".into(),
            initial: None
        }
    );
    assert_eq!(
        body("a001 LOGIN SMITH SESAME\r\n"),
        C::Login {
            user: b"SMITH".to_vec(),
            password: b"SESAME".to_vec()
        }
    );
}

#[test]
fn rfc3501_authenticated_state_examples() {
    assert_eq!(
        body("A142 SELECT INBOX\r\n"),
        C::Select {
            mailbox: "INBOX".into(),
            condstore: false
        }
    );
    assert_eq!(
        body("A932 EXAMINE blurdybloop\r\n"),
        C::Examine {
            mailbox: "blurdybloop".into(),
            condstore: false
        }
    );
    assert_eq!(
        body("A003 CREATE owatagusiam/\r\n"),
        C::Create {
            mailbox: "owatagusiam/".into(),
            special_use: vec![]
        }
    );
    assert_eq!(
        body("A004 CREATE owatagusiam/blurdybloop\r\n"),
        C::Create {
            mailbox: "owatagusiam/blurdybloop".into(),
            special_use: vec![]
        }
    );
    assert_eq!(
        body("A683 DELETE blurdybloop\r\n"),
        C::Delete {
            mailbox: "blurdybloop".into()
        }
    );
    assert_eq!(
        body("A685 DELETE foo/bar\r\n"),
        C::Delete {
            mailbox: "foo/bar".into()
        }
    );
    assert_eq!(
        body("A683 RENAME blurdybloop sarasoop\r\n"),
        C::Rename {
            from: "blurdybloop".into(),
            to: "sarasoop".into()
        }
    );
    assert_eq!(
        body("A002 SUBSCRIBE #news.comp.mail.mime\r\n"),
        C::Subscribe {
            mailbox: "#news.comp.mail.mime".into()
        }
    );
    assert_eq!(
        body("A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"),
        C::Unsubscribe {
            mailbox: "#news.comp.mail.mime".into()
        }
    );
    let list = |r: &str, p: &str| {
        C::List(ListCommand {
            reference: r.into(),
            patterns: vec![p.into()],
            ..Default::default()
        })
    };
    assert_eq!(body("A682 LIST \"\" *\r\n"), list("", "*"));
    assert_eq!(body("A101 LIST \"\" \"\"\r\n"), list("", ""));
    assert_eq!(
        body("A102 LIST #news.comp.mail.misc \"\"\r\n"),
        list("#news.comp.mail.misc", "")
    );
    assert_eq!(
        body("A103 LIST /usr/staff/jones \"\"\r\n"),
        list("/usr/staff/jones", "")
    );
    assert_eq!(body("A202 LIST ~/Mail/ %\r\n"), list("~/Mail/", "%"));
    assert_eq!(
        body("A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"),
        C::Lsub {
            reference: "#news.".into(),
            pattern: "comp.mail.*".into()
        }
    );
    assert_eq!(
        body("A003 LSUB \"#news.\" comp.%\r\n"),
        C::Lsub {
            reference: "#news.".into(),
            pattern: "comp.%".into()
        }
    );
    assert_eq!(
        body("A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"),
        C::Status {
            mailbox: "blurdybloop".into(),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
}

const RFC_APPEND_MSG: &str = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n\
From: Fred Foobar <foobar@Blurdybloop.COM>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu\r\n\
Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

#[test]
fn rfc3501_append_example_with_sync_literal() {
    assert_eq!(RFC_APPEND_MSG.len(), 310);
    let first = "A003 APPEND saved-messages (\\Seen) {310}\r\n";
    // Only the command line: the server must send a continuation.
    assert_eq!(
        parse_command(first.as_bytes(), &lim()),
        Parsed::NeedLiteral {
            size: 310,
            sync: true,
            at: first.len()
        }
    );
    // Part of the literal: same answer, same offset (send `+` only once).
    let partial = format!("{first}{}", &RFC_APPEND_MSG[..100]);
    assert_eq!(
        parse_command(partial.as_bytes(), &lim()),
        Parsed::NeedLiteral {
            size: 310,
            sync: true,
            at: first.len()
        }
    );
    // All of the literal but not the final CRLF.
    let nocrlf = format!("{first}{RFC_APPEND_MSG}");
    assert_eq!(parse_command(nocrlf.as_bytes(), &lim()), Parsed::NeedMore);
    let full = format!("{first}{RFC_APPEND_MSG}\r\nA004 NOOP\r\n");
    match parse_command(full.as_bytes(), &lim()) {
        Parsed::Complete { command, consumed } => {
            assert_eq!(consumed, full.len() - "A004 NOOP\r\n".len());
            assert_eq!(
                command.body,
                C::Append {
                    mailbox: "saved-messages".into(),
                    flags: vec![Flag::Seen],
                    date: None,
                    message: RFC_APPEND_MSG.as_bytes().to_vec(),
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn append_with_date_and_nonsync_literal() {
    let s = "a APPEND INBOX (\\Seen $Forwarded) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nhello\r\n";
    assert_eq!(
        body(s),
        C::Append {
            mailbox: "INBOX".into(),
            flags: vec![Flag::Seen, Flag::Keyword("$Forwarded".into())],
            date: DateTime::parse(b"17-Jul-1996 02:44:25 -0700"),
            message: b"hello".to_vec(),
        }
    );
    let head = "a APPEND INBOX {5+}\r\n";
    assert_eq!(
        parse_command(format!("{head}he").as_bytes(), &lim()),
        Parsed::NeedLiteral {
            size: 5,
            sync: false,
            at: head.len()
        }
    );
}

#[test]
fn rfc3501_selected_state_examples() {
    assert_eq!(body("FXXZ CHECK\r\n"), C::Check);
    assert_eq!(body("A341 CLOSE\r\n"), C::Close);
    assert_eq!(body("A202 EXPUNGE\r\n"), C::Expunge);
    assert_eq!(
        body("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"),
        C::Search {
            uid: false,
            charset: None,
            criteria: SearchKey::And(vec![
                SearchKey::Flagged,
                SearchKey::Since(Date::new(1994, 2, 1).unwrap()),
                SearchKey::Not(Box::new(SearchKey::From(b"Smith".to_vec()))),
            ]),
        }
    );
    assert_eq!(
        body("A283 SEARCH TEXT \"string not in mailbox\"\r\n"),
        C::Search {
            uid: false,
            charset: None,
            criteria: SearchKey::Text(b"string not in mailbox".to_vec()),
        }
    );
    let head = "A284 SEARCH CHARSET UTF-8 TEXT {6}\r\n";
    assert_eq!(
        parse_command(head.as_bytes(), &lim()),
        Parsed::NeedLiteral {
            size: 6,
            sync: true,
            at: head.len()
        }
    );
    let full = format!("{head}XXXXXX\r\n");
    assert_eq!(
        body(&full),
        C::Search {
            uid: false,
            charset: Some("UTF-8".into()),
            criteria: SearchKey::Text(b"XXXXXX".to_vec()),
        }
    );
    assert_eq!(
        body("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"),
        C::Fetch {
            uid: false,
            set: set("2:4"),
            items: vec![
                FetchItem::Flags,
                FetchItem::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::HeaderFields(vec![
                            "DATE".into(),
                            "FROM".into()
                        ])),
                    },
                    partial: None,
                },
            ],
            changed_since: None,
        }
    );
    assert_eq!(
        body("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"),
        C::Store {
            uid: false,
            set: set("2:4"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted],
        }
    );
    assert_eq!(
        body("A003 COPY 2:4 MEETING\r\n"),
        C::Copy {
            uid: false,
            set: set("2:4"),
            mailbox: "MEETING".into()
        }
    );
    assert_eq!(
        body("A999 UID FETCH 4827313:4828442 FLAGS\r\n"),
        C::Fetch {
            uid: true,
            set: set("4827313:4828442"),
            items: vec![FetchItem::Flags],
            changed_since: None,
        }
    );
    // §6.5.1: an unknown command is a BAD, with the tag.
    let (tag, _, consumed) = bad("A442 XPIG-LATIN\r\n");
    assert_eq!((tag.as_deref(), consumed), (Some("A442"), 17));
}

#[test]
fn rfc3501_section8_sample_session() {
    assert_eq!(
        body("a001 login mrc secret\r\n"),
        C::Login {
            user: b"mrc".to_vec(),
            password: b"secret".to_vec()
        }
    );
    assert_eq!(
        body("a002 select inbox\r\n"),
        C::Select {
            mailbox: "INBOX".into(),
            condstore: false
        }
    );
    use FetchItem as F;
    assert_eq!(
        body("a003 fetch 12 full\r\n"),
        C::Fetch {
            uid: false,
            set: set("12"),
            items: vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body
            ],
            changed_since: None,
        }
    );
    assert_eq!(
        body("a004 fetch 12 body[header]\r\n"),
        C::Fetch {
            uid: false,
            set: set("12"),
            items: vec![F::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::Header)
                },
                partial: None,
            }],
            changed_since: None,
        }
    );
    assert_eq!(
        body("a005 store 12 +flags \\deleted\r\n"),
        C::Store {
            uid: false,
            set: set("12"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted],
        }
    );
    assert_eq!(body("a006 logout\r\n"), C::Logout);
}
