//! Unit tests of the response encoders, byte for byte against the examples
//! of RFC 3501 and the extensions' RFCs.

use super::*;
use crate::mail::imap::mime;
use crate::mail::imap::parser::{Section, SectionText, StatusItem};
use crate::mail::imap::types::DateTime;

fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

/// The responses RFC 3501 §7 and §6 show, byte for byte (mailbox names
/// we always quote, which the grammar allows).
#[test]
fn rfc3501_status_responses() {
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::Unseen(17)),
            "Message 17 is the first unseen message"
        )),
        "* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
    );
    let pf = Code::PermanentFlags {
        flags: vec![Flag::Deleted, Flag::Seen],
        allow_new: true,
    };
    assert_eq!(
        s(|o| untagged(o, Status::Ok, Some(&pf), "Limited")),
        "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
    );
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::UidValidity(3857529045)),
            "UIDs valid"
        )),
        "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    );
    assert_eq!(
        s(|o| tagged(
            o,
            "A142",
            Status::Ok,
            Some(&Code::ReadWrite),
            "SELECT completed"
        )),
        "A142 OK [READ-WRITE] SELECT completed\r\n"
    );
    assert_eq!(
        s(|o| tagged(
            o,
            "A932",
            Status::Ok,
            Some(&Code::ReadOnly),
            "EXAMINE completed"
        )),
        "A932 OK [READ-ONLY] EXAMINE completed\r\n"
    );
    assert_eq!(
        s(|o| tagged(o, "A003", Status::No, Some(&Code::TryCreate), "")),
        "A003 NO [TRYCREATE]\r\n"
    );
    assert_eq!(
        s(|o| tagged(o, "a001", Status::No, None, "bad\r\ninjected")),
        "a001 NO bad??injected\r\n"
    );
    assert_eq!(
        s(|o| untagged(o, Status::Bye, None, "IMAP4rev1 Server logging out")),
        "* BYE IMAP4rev1 Server logging out\r\n"
    );
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Preauth,
            None,
            "IMAP4rev1 server logged in as Smith"
        )),
        "* PREAUTH IMAP4rev1 server logged in as Smith\r\n"
    );
    assert_eq!(
        s(|o| untagged(o, Status::Bad, None, "Empty command line")),
        "* BAD Empty command line\r\n"
    );
    assert_eq!(
        s(|o| continuation(o, "Ready for additional command text")),
        "+ Ready for additional command text\r\n"
    );
    assert_eq!(s(|o| continuation_base64(o, b"")), "+ \r\n");
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::Capability(vec!["IMAP4rev1".into(), "IDLE".into()])),
            "ready"
        )),
        "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n"
    );
    assert_eq!(
        s(|o| untagged(o, Status::Ok, Some(&Code::Other("X]Y".into())), "t")),
        "* OK [XY] t\r\n"
    );
}

#[test]
fn rfc3501_data_responses() {
    assert_eq!(
        s(|o| capability(
            o,
            &["IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED"]
        )),
        "* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"
    );
    assert_eq!(
        s(|o| flags(
            o,
            &[
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft
            ]
        )),
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    );
    assert_eq!(s(|o| exists(o, 172)), "* 172 EXISTS\r\n");
    assert_eq!(s(|o| recent(o, 1)), "* 1 RECENT\r\n");
    assert_eq!(s(|o| expunge(o, 44)), "* 44 EXPUNGE\r\n");
    assert_eq!(s(|o| search(o, &[2, 3, 6], None)), "* SEARCH 2 3 6\r\n");
    assert_eq!(s(|o| search(o, &[], Some(5))), "* SEARCH\r\n");
    assert_eq!(
        s(|o| search(o, &[2, 5], Some(917162500))),
        "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    );
    assert_eq!(
        s(|o| list(o, false, &["\\Noselect"], Some('/'), "~/Mail/foo")),
        "* LIST (\\Noselect) \"/\" \"~/Mail/foo\"\r\n"
    );
    assert_eq!(
        s(|o| list(o, true, &[], Some('.'), "#news.comp.mail.mime")),
        "* LSUB () \".\" \"#news.comp.mail.mime\"\r\n"
    );
    assert_eq!(
        s(|o| list(o, false, &["\\HasNoChildren", "\\Sent"], Some('\\'), "Sent")),
        "* LIST (\\HasNoChildren \\Sent) \"\\\\\" \"Sent\"\r\n"
    );
    assert_eq!(
        s(|o| list(o, false, &["\\Noselect"], None, "")),
        "* LIST (\\Noselect) NIL \"\"\r\n"
    );
    assert_eq!(
        s(|o| status(
            o,
            "blurdybloop",
            &[(StatusItem::Messages, 231), (StatusItem::UidNext, 44292)]
        )),
        "* STATUS \"blurdybloop\" (MESSAGES 231 UIDNEXT 44292)\r\n"
    );
    assert_eq!(s(|o| enabled(o, &["CONDSTORE"])), "* ENABLED CONDSTORE\r\n");
    assert_eq!(
        s(|o| id(o, Some(&[("name", "frontdoor")]))),
        "* ID (\"name\" \"frontdoor\")\r\n"
    );
    assert_eq!(s(|o| id(o, None)), "* ID NIL\r\n");
    assert_eq!(
        s(|o| namespace(o, "", '/')),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    );
    assert_eq!(
        s(|o| metadata(
            o,
            "",
            &[("/shared/comment", Some(b"hi")), ("/shared/admin", None)]
        )),
        "* METADATA \"\" (/shared/comment {2}\r\nhi /shared/admin NIL)\r\n"
    );
    assert_eq!(
        s(|o| quota_root(o, "INBOX", &[""])),
        "* QUOTAROOT \"INBOX\" \"\"\r\n"
    );
    assert_eq!(
        s(|o| quota(o, "", &[("STORAGE", 10, 512)])),
        "* QUOTA \"\" (STORAGE 10 512)\r\n"
    );
}

/// §6.3.1 SELECT, §6.4.6 STORE, §6.4.8 UID FETCH and §6.2.2
/// AUTHENTICATE answers, byte for byte.
#[test]
fn rfc3501_section6_sample_answers() {
    let got = s(|o| {
        exists(o, 172);
        recent(o, 1);
        untagged(
            o,
            Status::Ok,
            Some(&Code::Unseen(12)),
            "Message 12 is first unseen",
        );
        untagged(
            o,
            Status::Ok,
            Some(&Code::UidValidity(3857529045)),
            "UIDs valid",
        );
        untagged(
            o,
            Status::Ok,
            Some(&Code::UidNext(4392)),
            "Predicted next UID",
        );
        flags(
            o,
            &[
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft,
            ],
        );
        let pf = Code::PermanentFlags {
            flags: vec![Flag::Deleted, Flag::Seen],
            allow_new: true,
        };
        untagged(o, Status::Ok, Some(&pf), "Limited");
        tagged(
            o,
            "A142",
            Status::Ok,
            Some(&Code::ReadWrite),
            "SELECT completed",
        );
    });
    assert_eq!(
        got,
        "* 172 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 12] Message 12 is first unseen\r\n\
* OK [UIDVALIDITY 3857529045] UIDs valid\r\n* OK [UIDNEXT 4392] Predicted next UID\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\nA142 OK [READ-WRITE] SELECT completed\r\n"
    );
    assert_eq!(
        s(|o| fetch(o, 2, &[FetchData::Flags(&[Flag::Deleted, Flag::Seen])])),
        "* 2 FETCH (FLAGS (\\Deleted \\Seen))\r\n"
    );
    assert_eq!(
        s(|o| fetch(
            o,
            23,
            &[FetchData::Flags(&[Flag::Seen]), FetchData::Uid(4827313)]
        )),
        "* 23 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"
    );
    use base64::Engine as _;
    let challenge = "YDMGCSqGSIb3EgECAgIBAAD/////6jcyG4GE3KkTzBeBiVHeceP2CWY0SR0fAQAgAAQEBAQ=";
    let data = base64::engine::general_purpose::STANDARD
        .decode(challenge)
        .unwrap();
    assert_eq!(
        s(|o| continuation_base64(o, &data)),
        format!("+ {challenge}\r\n")
    );
    assert_eq!(
        s(|o| tagged(
            o,
            "A001",
            Status::Ok,
            None,
            "GSSAPI authentication successful"
        )),
        "A001 OK GSSAPI authentication successful\r\n"
    );
}

#[test]
fn uidplus_and_condstore_codes() {
    let c = Code::AppendUid {
        uid_validity: 38505,
        uids: vec![3955],
    };
    assert_eq!(
        s(|o| tagged(o, "A003", Status::Ok, Some(&c), "APPEND completed")),
        "A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
    );
    let c = Code::CopyUid {
        uid_validity: 38505,
        source: vec![304, 319, 320],
        dest: vec![3956, 3957, 3958],
    };
    assert_eq!(
        s(|o| tagged(o, "A004", Status::Ok, Some(&c), "Done")),
        "A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
    );
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::HighestModSeq(715194045007)),
            "Highest"
        )),
        "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
    );
    assert_eq!(
        s(|o| untagged(o, Status::Ok, Some(&Code::NoModSeq), "No")),
        "* OK [NOMODSEQ] No\r\n"
    );
    assert_eq!(
        s(|o| tagged(
            o,
            "d105",
            Status::Ok,
            Some(&Code::Modified("7,9".into())),
            "x"
        )),
        "d105 OK [MODIFIED 7,9] x\r\n"
    );
    assert_eq!(
        s(|o| untagged(
            o,
            Status::Ok,
            Some(&Code::UidNext(4392)),
            "Predicted next UID"
        )),
        "* OK [UIDNEXT 4392] Predicted next UID\r\n"
    );
}

#[test]
fn string_quoting() {
    assert_eq!(s(|o| write_string(o, b"plain")), "\"plain\"");
    assert_eq!(s(|o| write_string(o, b"a\"b\\c")), "\"a\\\"b\\\\c\"");
    assert_eq!(
        s(|o| write_string(o, b"two\r\nlines")),
        "{10}\r\ntwo\r\nlines"
    );
    assert_eq!(s(|o| write_string(o, "Grüße".as_bytes())), "{7}\r\nGrüße");
    let long = "x".repeat(MAX_QUOTED + 1);
    assert!(s(|o| write_string(o, long.as_bytes())).starts_with("{1025}\r\n"));
    assert_eq!(s(|o| write_nstring(o, None)), "NIL");
    assert_eq!(s(|o| write_astring(o, b"INBOX")), "INBOX");
    assert_eq!(s(|o| write_astring(o, b"nil")), "\"nil\"");
    assert_eq!(s(|o| write_astring(o, b"a b")), "\"a b\"");
    assert_eq!(s(|o| write_astring(o, b"")), "\"\"");
}

#[test]
fn fetch_items() {
    assert_eq!(
        s(|o| fetch(
            o,
            23,
            &[
                FetchData::Flags(&[Flag::Seen]),
                FetchData::Rfc822Size(44827)
            ]
        )),
        "* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n"
    );
    let sec = Section {
        part: vec![],
        text: Some(SectionText::HeaderFields(vec![
            "DATE".into(),
            "FROM".into(),
        ])),
    };
    let hdr = b"Date: x\r\n\r\n";
    assert_eq!(
        s(|o| fetch(
            o,
            2,
            &[
                FetchData::Uid(7),
                FetchData::BodySection {
                    section: &sec,
                    origin: None,
                    data: Some(hdr)
                }
            ]
        )),
        "* 2 FETCH (UID 7 BODY[HEADER.FIELDS (DATE FROM)] {11}\r\nDate: x\r\n\r\n)\r\n"
    );
    let sec = Section {
        part: vec![1, 2],
        text: Some(SectionText::Mime),
    };
    assert_eq!(
        s(|o| fetch(
            o,
            1,
            &[FetchData::BodySection {
                section: &sec,
                origin: Some(0),
                data: None
            }]
        )),
        "* 1 FETCH (BODY[1.2.MIME]<0> NIL)\r\n"
    );
    let sec = Section {
        part: vec![3],
        text: None,
    };
    assert_eq!(
        s(|o| fetch(
            o,
            1,
            &[
                FetchData::BodySection {
                    section: &sec,
                    origin: None,
                    data: Some(b"")
                },
                FetchData::ModSeq(624140003)
            ]
        )),
        "* 1 FETCH (BODY[3] {0}\r\n MODSEQ (624140003))\r\n"
    );
    let dt = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
    assert_eq!(
        s(|o| fetch(o, 3, &[FetchData::InternalDate(dt), FetchData::Rfc822Header(b"A: b\r\n\r\n")])),
        "* 3 FETCH (INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.HEADER {8}\r\nA: b\r\n\r\n)\r\n"
    );
}

/// RFC 3501 §8's `a003 fetch 12 full` answer, rebuilt from a message
/// with that header and a 92-line, 3028-octet text body. The sample
/// is wrapped for display; as §9 `env-cc = "(" 1*address ")"` says,
/// addresses follow each other with no space between them.
#[test]
fn rfc3501_section8_fetch_full() {
    let header = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
From: Terry Gray <gray@cac.washington.edu>\r\n\
Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
To: imap@cac.washington.edu\r\n\
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n\
Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n";
    let mut body = String::new();
    for _ in 0..91 {
        body.push_str(&"y".repeat(31));
        body.push_str("\r\n");
    }
    body.push_str(&"z".repeat(3028 - body.len() - 2));
    body.push_str("\r\n");
    assert_eq!(body.len(), 3028);
    let raw = format!("{header}{body}");
    let raw = raw.as_bytes();
    let part = mime::parse(raw);
    let env = mime::Envelope::from_header(&raw[part.header.clone()]);
    let dt = DateTime::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
    let got = s(|o| {
        fetch(
            o,
            12,
            &[
                FetchData::Flags(&[Flag::Seen]),
                FetchData::InternalDate(dt),
                FetchData::Rfc822Size(4286),
                FetchData::Envelope(&env),
                FetchData::Body { raw, part: &part },
            ],
        )
    });
    let want = "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" \
RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
\"IMAP4rev1 WG mtg summary and minutes\" \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
((NIL NIL \"imap\" \"cac.washington.edu\")) \
((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")\
(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
\"<B27397-0100000@cac.washington.edu>\") \
BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n";
    assert_eq!(got, want);
}
