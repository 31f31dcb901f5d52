//! Unit tests of the MIME reader: real-world message shapes, broken MIME,
//! the nesting and part bounds, addresses and partials.

use super::*;
use crate::mail::imap::parser::{parse_command, CommandBody, FetchItem, Limits, Parsed};
use crate::mail::imap::response::{write_body, write_envelope};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn bodystructure(raw: &[u8]) -> String {
    let mut out = Vec::new();
    write_body(&mut out, raw, &parse(raw), true, 0);
    String::from_utf8(out).unwrap()
}

fn body(raw: &[u8]) -> String {
    let mut out = Vec::new();
    write_body(&mut out, raw, &parse(raw), false, 0);
    String::from_utf8(out).unwrap()
}

fn envelope(raw: &[u8]) -> String {
    let p = parse(raw);
    let mut out = Vec::new();
    write_envelope(&mut out, &Envelope::from_header(&raw[p.header]));
    String::from_utf8(out).unwrap()
}

/// `BODY[spec]` through the real parser, as text (None: no such part).
fn sec(raw: &[u8], spec: &str) -> Option<String> {
    let cmd = format!("a FETCH 1 BODY[{spec}]\r\n");
    let Parsed::Complete { command, .. } = parse_command(cmd.as_bytes(), &Limits::default()) else {
        panic!("bad section {spec}");
    };
    let CommandBody::Fetch { items, .. } = command.body else {
        panic!()
    };
    let FetchItem::BodySection { section: s, .. } = &items[0] else {
        panic!()
    };
    section(raw, &parse(raw), s).map(|b| String::from_utf8(b.into_owned()).unwrap())
}

#[test]
fn plain_text_without_content_type() {
    let raw = crlf("From: Fred Foobar <foobar@Blurdybloop.COM>\nSubject: afternoon meeting\nTo: mooch@owatagu.siam.edu\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\n\nHello Joe, do you think we can meet at 3:30 tomorrow?\n");
    assert_eq!(
        bodystructure(&raw),
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL)"
    );
    assert_eq!(
        envelope(&raw),
        "(NIL \"afternoon meeting\" ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) ((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.COM\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu\")) NIL NIL NIL \"<B27397-0100000@Blurdybloop.COM>\")"
    );
    assert_eq!(
        sec(&raw, "1").as_deref(),
        Some("Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
    );
    assert_eq!(sec(&raw, "TEXT"), sec(&raw, "1"));
    assert_eq!(sec(&raw, "").map(|s| s.len()), Some(raw.len()));
    assert_eq!(
        sec(&raw, "HEADER.FIELDS (SUBJECT to)").as_deref(),
        Some("Subject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu\r\n\r\n")
    );
    assert_eq!(
        sec(&raw, "HEADER.FIELDS.NOT (FROM SUBJECT TO)").as_deref(),
        Some("Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n\r\n")
    );
    assert_eq!(sec(&raw, "HEADER.FIELDS (X-NONE)").as_deref(), Some("\r\n"));
    assert!(sec(&raw, "HEADER")
        .unwrap()
        .ends_with("Blurdybloop.COM>\r\n\r\n"));
    assert_eq!(sec(&raw, "2"), None);
    assert_eq!(sec(&raw, "1.HEADER"), None);
}

const ALTERNATIVE: &str = "From: Alice <alice@example.org>
To: bob@example.net
Subject: Hi
Date: Mon, 1 Jan 2024 10:00:00 +0000
Message-ID: <alt@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello Bob
--b1
Content-Type: text/html; charset=utf-8

<p>Hello Bob</p>
--b1--
";

#[test]
fn multipart_alternative() {
    let raw = crlf(ALTERNATIVE);
    assert_eq!(
        bodystructure(&raw),
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1 NIL NIL NIL NIL)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 16 1 NIL NIL NIL NIL) \
\"alternative\" (\"boundary\" \"b1\") NIL NIL NIL)"
    );
    assert_eq!(
        body(&raw),
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 1)\
(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 16 1) \"alternative\")"
    );
    assert_eq!(sec(&raw, "1").as_deref(), Some("Hello Bob"));
    assert_eq!(sec(&raw, "2").as_deref(), Some("<p>Hello Bob</p>"));
    assert_eq!(
        sec(&raw, "2.MIME").as_deref(),
        Some("Content-Type: text/html; charset=utf-8\r\n\r\n")
    );
    assert_eq!(sec(&raw, "3"), None);
    assert_eq!(
        envelope(&raw),
        "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hi\" ((\"Alice\" NIL \"alice\" \"example.org\")) \
((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<alt@example.org>\")"
    );
}

#[test]
fn multipart_mixed_with_attachment() {
    let raw = crlf("Subject: report\nContent-Type: multipart/mixed;\n boundary=\"XyZ\"\n\nThis is a multi-part message in MIME format.\n--XyZ\nContent-Type: text/plain; charset=\"us-ascii\"\n\nSee attached.\n--XyZ\nContent-Type: application/pdf; name=\"report.pdf\"\nContent-Disposition: attachment; filename=\"report.pdf\"\nContent-Transfer-Encoding: base64\nContent-Language: en, de\nContent-ID: <part2@x>\nContent-Location: http://x/r.pdf\n\nJVBERi0xLjQK\n--XyZ--\nepilogue\n");
    assert_eq!(
        bodystructure(&raw),
        "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"report.pdf\") \"<part2@x>\" NIL \"base64\" 12 NIL \
(\"attachment\" (\"filename\" \"report.pdf\")) (\"en\" \"de\") \"http://x/r.pdf\") \
\"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL)"
    );
    assert_eq!(sec(&raw, "2").as_deref(), Some("JVBERi0xLjQK"));
    assert!(sec(&raw, "TEXT")
        .unwrap()
        .starts_with("This is a multi-part"));
    assert!(sec(&raw, "TEXT").unwrap().ends_with("epilogue\r\n"));
    assert_eq!(
        sec(&raw, "1.MIME").as_deref(),
        Some("Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\n")
    );
    assert_eq!(sec(&raw, "1.1").as_deref(), Some("See attached."));
}

/// The shape Delta Chat sends: Autocrypt header, PGP/MIME (RFC 3156).
#[test]
fn delta_chat_pgp_encrypted() {
    let raw = crlf("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n\tboundary=\"1867c0e4_6bbf7a1d_2\"\nAutocrypt: addr=alice@example.org; prefer-encrypt=mutual;\n\tkeydata=xjMEZQAAABYJKwYBBAHaRw8BAQdA\nChat-Version: 1.0\nSubject: [...]\nFrom: <alice@example.org>\nTo: <bob@example.net>\nDate: Tue, 02 Jan 2024 12:00:00 +0000\nMessage-ID: <Mr.abc123@example.org>\nMIME-Version: 1.0\n\n--1867c0e4_6bbf7a1d_2\nContent-Type: application/pgp-encrypted; charset=\"utf-8\"\nContent-Description: PGP/MIME version identification\nContent-Transfer-Encoding: 7bit\n\nVersion: 1\n\n--1867c0e4_6bbf7a1d_2\nContent-Type: application/octet-stream; name=\"encrypted.asc\";\n\tcharset=\"utf-8\"\nContent-Description: OpenPGP encrypted message\nContent-Disposition: inline; filename=\"encrypted.asc\";\nContent-Transfer-Encoding: 7bit\n\n-----BEGIN PGP MESSAGE-----\n\nwV4D5tq63hTeebASAQdA\n-----END PGP MESSAGE-----\n\n\n--1867c0e4_6bbf7a1d_2--\n");
    let armored = "-----BEGIN PGP MESSAGE-----\r\n\r\nwV4D5tq63hTeebASAQdA\r\n-----END PGP MESSAGE-----\r\n\r\n";
    assert_eq!(armored.len(), 82);
    assert_eq!(
        bodystructure(&raw),
        "((\"application\" \"pgp-encrypted\" (\"charset\" \"utf-8\") NIL \"PGP/MIME version identification\" \"7bit\" 12 NIL NIL NIL NIL)\
(\"application\" \"octet-stream\" (\"name\" \"encrypted.asc\" \"charset\" \"utf-8\") NIL \"OpenPGP encrypted message\" \"7bit\" 82 NIL \
(\"inline\" (\"filename\" \"encrypted.asc\")) NIL NIL) \
\"encrypted\" (\"protocol\" \"application/pgp-encrypted\" \"boundary\" \"1867c0e4_6bbf7a1d_2\") NIL NIL NIL)"
    );
    assert_eq!(sec(&raw, "2").as_deref(), Some(armored));
    assert_eq!(sec(&raw, "1").as_deref(), Some("Version: 1\r\n"));
    assert_eq!(
        envelope(&raw),
        "(\"Tue, 02 Jan 2024 12:00:00 +0000\" \"[...]\" ((NIL NIL \"alice\" \"example.org\")) \
((NIL NIL \"alice\" \"example.org\")) ((NIL NIL \"alice\" \"example.org\")) \
((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<Mr.abc123@example.org>\")"
    );
    // Delta Chat's prefetch: folded headers come back with their folding.
    assert_eq!(
        sec(&raw, "HEADER.FIELDS (MESSAGE-ID DATE FROM CHAT-VERSION AUTOCRYPT-SETUP-MESSAGE)").as_deref(),
        Some("Chat-Version: 1.0\r\nFrom: <alice@example.org>\r\nDate: Tue, 02 Jan 2024 12:00:00 +0000\r\nMessage-ID: <Mr.abc123@example.org>\r\n\r\n")
    );
    assert!(sec(&raw, "HEADER.FIELDS (AUTOCRYPT)")
        .unwrap()
        .contains("\r\n\tkeydata="));
}

#[test]
fn message_rfc822_forward() {
    let inner = "From: Alice <alice@example.org>\r\nSubject: Hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\nthere";
    let raw = crlf("From: Carol <carol@example.com>\nTo: Dave <dave@example.com>\nSubject: Fwd: Hi\nContent-Type: multipart/mixed; boundary=\"fwd\"\n\n--fwd\nContent-Type: text/plain\n\nSee below.\n--fwd\nContent-Type: message/rfc822\nContent-Disposition: inline\n\nFrom: Alice <alice@example.org>\nSubject: Hi\nContent-Type: text/plain; charset=utf-8\n\nHello\nthere\n--fwd--\n");
    let alice = "(\"Alice\" NIL \"alice\" \"example.org\")";
    assert_eq!(
        bodystructure(&raw),
        format!(
            "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)\
(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" {} \
(NIL \"Hi\" ({alice}) ({alice}) ({alice}) NIL NIL NIL NIL NIL) \
(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 12 2 NIL NIL NIL NIL) 6 \
NIL (\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"fwd\") NIL NIL NIL)",
            inner.len()
        )
    );
    assert_eq!(sec(&raw, "2").as_deref(), Some(inner));
    assert_eq!(
        sec(&raw, "2.HEADER").as_deref(),
        Some("From: Alice <alice@example.org>\r\nSubject: Hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    );
    assert_eq!(sec(&raw, "2.TEXT").as_deref(), Some("Hello\r\nthere"));
    assert_eq!(sec(&raw, "2.1").as_deref(), Some("Hello\r\nthere"));
    assert_eq!(
        sec(&raw, "2.HEADER.FIELDS (SUBJECT)").as_deref(),
        Some("Subject: Hi\r\n\r\n")
    );
    assert_eq!(
        sec(&raw, "2.MIME").as_deref(),
        Some("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
    );
    assert_eq!(sec(&raw, "1.HEADER"), None);
    assert_eq!(sec(&raw, "2.2"), None);
    assert_eq!(sec(&raw, "3"), None);
}

#[test]
fn broken_mime_is_tolerated() {
    // Bare LF, no close delimiter.
    let raw = b"Subject: x\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\nbody1\n--zz\nContent-Type: text/html\n\n<b>\n";
    let p = parse(raw);
    let PartKind::Multipart(ch) = &p.kind else {
        panic!("{p:?}")
    };
    assert_eq!(ch.len(), 2);
    assert_eq!(&raw[ch[0].body.clone()], b"body1");
    assert_eq!(&raw[ch[1].body.clone()], b"<b>\n");
    assert_eq!(ch[1].subtype, "html");
    // No boundary parameter: one text/plain part with the whole body.
    let raw = crlf("Content-Type: multipart/mixed\n\nstuff\n");
    assert_eq!(
        bodystructure(&raw),
        "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL)"
    );
    // Boundary that never appears: same.
    let raw = crlf("Content-Type: multipart/mixed; boundary=nope\n\nstuff\n");
    assert!(bodystructure(&raw).starts_with("((\"text\" \"plain\""));
    // Header only, no blank line; and nothing at all.
    let raw = b"Subject: only a header";
    let p = parse(raw);
    assert_eq!((p.header.clone(), p.body.clone()), (0..22, 22..22));
    assert_eq!(sec(raw, "TEXT").as_deref(), Some(""));
    assert_eq!(
        bodystructure(b""),
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
    );
    // Garbage content type and parameters.
    let raw = crlf("Content-Type: ;;;=; a=\"unterminated\nContent-Disposition: ;\n\nx");
    assert!(bodystructure(&raw).starts_with("(\"text\" \"plain\""));
    // message/rfc822 in base64 stays opaque.
    let raw =
        crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nRnJvbTogeA==\n");
    assert_eq!(parse(&raw).kind, PartKind::Single);
}

#[test]
fn nesting_and_part_count_are_bounded() {
    // 200 nested message/rfc822: parsed to MAX_DEPTH, no stack overflow.
    let mut raw = Vec::new();
    for _ in 0..200 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: core\r\n\r\nbody");
    let p = parse(&raw);
    let mut depth = 0;
    let mut cur = &p;
    while let PartKind::Message(inner) = &cur.kind {
        depth += 1;
        cur = inner;
    }
    assert_eq!(depth, MAX_DEPTH);
    let mut out = Vec::new();
    write_body(&mut out, &raw, &p, true, 0);
    assert!(out.len() > 1000);
    // Nested multiparts likewise.
    let mut raw = Vec::new();
    for i in 0..100 {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    let _ = bodystructure(&raw);
    // Many parts: capped.
    let mut raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n".to_vec();
    for _ in 0..5000 {
        raw.extend_from_slice(b"--q\r\n\r\nx\r\n");
    }
    let PartKind::Multipart(ch) = parse(&raw).kind else {
        panic!()
    };
    assert!(ch.len() < MAX_PARTS);
}

#[test]
fn addresses() {
    let a = |s: &str| {
        let mut out = Vec::new();
        let e = Envelope {
            to: parse_addresses(s.as_bytes()),
            ..Default::default()
        };
        write_envelope(&mut out, &e);
        let s = String::from_utf8(out).unwrap();
        s["(NIL NIL NIL NIL NIL ".len()..s.len() - " NIL NIL NIL NIL)".len()].to_owned()
    };
    assert_eq!(
        a("undisclosed-recipients:;"),
        "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"
    );
    assert_eq!(
        a("A Group: a@b.c, \"C D\" <c@d.e>;, f@g.h"),
        "((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"b.c\")(\"C D\" NIL \"c\" \"d.e\")(NIL NIL NIL NIL)(NIL NIL \"f\" \"g.h\"))"
    );
    assert_eq!(
        a("bob@example.net (Bob Smith)"),
        "((\"Bob Smith\" NIL \"bob\" \"example.net\"))"
    );
    assert_eq!(
        a("\"Last, First\" <first.last@example.com>"),
        "((\"Last, First\" NIL \"first.last\" \"example.com\"))"
    );
    assert_eq!(
        a("<@r1,@r2:user@host>"),
        "((NIL \"@r1,@r2\" \"user\" \"host\"))"
    );
    assert_eq!(
        a("=?utf-8?q?J=C3=B6rg?= <j@x.de>"),
        "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.de\"))"
    );
    assert_eq!(a("broken"), "((NIL NIL \"broken\" \"MISSING_DOMAIN\"))");
    assert_eq!(a("a@[127.0.0.1]"), "((NIL NIL \"a\" \"[127.0.0.1]\"))");
    assert_eq!(a(""), "NIL");
    assert_eq!(a(",,,"), "NIL");
    assert_eq!(a("\"J\\\"r\" <x@y>"), "((\"J\\\"r\" NIL \"x\" \"y\"))");
    let many = "a@b, ".repeat(3000);
    assert_eq!(parse_addresses(many.as_bytes()).len(), MAX_ADDRESSES);
}

#[test]
fn envelope_sender_reply_to_and_empty() {
    let raw = crlf("From: a@b\nSender: s@b\nReply-To:\nIn-Reply-To: <p@b>\nSubject:  spaced  \n\n");
    assert_eq!(
        envelope(&raw),
        "(NIL \"spaced\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"s\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL NIL \"<p@b>\" NIL)"
    );
    let raw = crlf("Subject: =?utf-8?B?8J+Ygg==?=\n\n");
    assert!(envelope(&raw).starts_with("(NIL \"=?utf-8?B?8J+Ygg==?=\" NIL NIL NIL"));
    let raw = "Subject: Grüße\r\n\r\n".as_bytes();
    assert!(envelope(raw).starts_with("(NIL {7}\r\nGrüße NIL"));
}

#[test]
fn partial_clamps() {
    assert_eq!(partial(b"0123456789", 2, 3), b"234");
    assert_eq!(partial(b"0123456789", 8, 100), b"89");
    assert_eq!(partial(b"0123456789", 100, 1), b"");
    assert_eq!(partial(b"", u32::MAX, u32::MAX), b"");
}
