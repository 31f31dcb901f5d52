//! Submission through the real `frontdoor mail serve`, with the PROXY v2
//! header the front door would send: identity semantics, AUTH, each refusal
//! with its code, bad input, and delivery into the store.

mod common;
mod mail_common;
use mail_common::*;

fn send_mail(c: &mut Client, from: &str, to: &str, token: &str) -> (u16, String) {
    let (code, t) = c.cmd(&format!("MAIL FROM:<{from}>"));
    assert_eq!(code, 250, "{t}");
    let (code, t) = c.cmd(&format!("RCPT TO:<{to}>"));
    assert_eq!(code, 250, "{t}");
    let (code, _) = c.cmd("DATA");
    assert_eq!(code, 354);
    c.send(&message(from, to, token));
    c.cmd(".")
}

#[test]
fn identity_sends_without_auth_and_mail_lands_in_store() {
    let mut srv = Server::new(Opts::default());
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(srv.submission, Some(&h()));
    let (code, ehlo) = c.cmd("EHLO client.example");
    assert_eq!(code, 250);
    for ext in [
        "PIPELINING",
        "SIZE 100000",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "AUTH PLAIN LOGIN EXTERNAL",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing in {ehlo}");
    }
    let (code, t) = send_mail(
        &mut c,
        "alice@example.org",
        "bob@example.org",
        "tok-identity",
    );
    assert_eq!(code, 250, "{t}");
    assert!(t.contains("2.0.0"), "{t}");
    assert_eq!(c.cmd("QUIT").0, 221);

    let st = srv.stop_and_open_store();
    let msgs = st.messages("bob@example.org", "INBOX").unwrap();
    assert_eq!(msgs.len(), 1);
    let raw = String::from_utf8(st.read("bob@example.org", "INBOX", msgs[0].uid).unwrap()).unwrap();
    assert!(
        raw.starts_with("Received: from client.example ([192.0.2.7])"),
        "{raw}"
    );
    assert!(raw.contains("with ESMTPA"), "{raw}");
    assert!(raw.contains("body tok-identity\r\n"), "{raw}");
    // No key facts beyond the account leak into the message.
    assert!(!raw.contains("phone"), "{raw}");
    assert_eq!(msgs[0].size as usize, raw.len());
}

#[test]
fn without_identity_auth_is_required_then_plain_and_login_work() {
    let srv = Server::new(Opts::default());
    let h = || proxy_header(None, None);
    let mut c = Client::open(srv.submission, Some(&h()));
    let (_, ehlo) = c.cmd("EHLO x");
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN\n"),
        "no EXTERNAL without identity: {ehlo}"
    );
    let (code, t) = c.cmd("MAIL FROM:<alice@example.org>");
    assert_eq!(code, 530, "{t}");
    assert!(t.contains("5.7.0"));
    let (code, t) = c.cmd(&format!(
        "AUTH PLAIN {}",
        b64(b"\0alice@example.org\0wrong")
    ));
    assert_eq!(code, 535, "{t}");
    let (code, _) = c.cmd("AUTH EXTERNAL =");
    assert_eq!(code, 535, "EXTERNAL without identity");
    let (code, t) = c.cmd(&format!(
        "AUTH PLAIN {}",
        b64(b"\0alice@example.org\0alice-pw")
    ));
    assert_eq!(code, 235, "{t}");
    assert_eq!(
        send_mail(&mut c, "alice@example.org", "bob@example.org", "tok-plain").0,
        250
    );

    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(c.cmd("AUTH LOGIN").0, 334);
    assert_eq!(c.cmd(&b64(b"bob@example.org")).0, 334);
    assert_eq!(c.cmd(&b64(b"bob-pw")).0, 235);
    // Logged in as bob: alice's address is not his.
    let (code, t) = c.cmd("MAIL FROM:<alice@example.org>");
    assert_eq!(code, 553, "{t}");
    assert!(t.contains("5.7.1"), "{t}");
}

#[test]
fn identity_auth_rules() {
    let srv = Server::new(Opts::default());
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    // EXTERNAL with empty authzid, and with the login.
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(c.cmd("AUTH EXTERNAL =").0, 235);
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!("AUTH EXTERNAL {}", b64(b"alice@example.org")))
            .0,
        235
    );
    assert_eq!(
        send_mail(&mut c, "alice@example.org", "bob@example.org", "tok-ext").0,
        250
    );
    // EXTERNAL naming another account.
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!("AUTH EXTERNAL {}", b64(b"bob@example.org")))
            .0,
        535
    );
    // Password for the same account: fine; for another account: 535.
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd(&format!(
            "AUTH PLAIN {}",
            b64(b"\0alice@example.org\0alice-pw")
        ))
        .0,
        235
    );
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    let (code, t) = c.cmd(&format!("AUTH PLAIN {}", b64(b"\0bob@example.org\0bob-pw")));
    assert_eq!(code, 535, "{t}");
    assert!(t.contains("5.7.8"));
}

#[test]
fn refusals_553_relaying_and_from_mismatch() {
    let srv = Server::new(Opts::default());
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    let (code, t) = c.cmd("MAIL FROM:<bob@example.org>");
    assert_eq!((code, t.contains("5.7.1")), (553, true), "{t}");
    assert_eq!(c.cmd("MAIL FROM:<Alice@Example.org>").0, 250);
    let (code, t) = c.cmd("RCPT TO:<someone@remote.example>");
    assert_eq!(code, 550, "{t}");
    assert!(t.contains("5.7.1 Relaying not available"), "{t}");
    let (code, _) = c.cmd("RCPT TO:<nobody@example.org>");
    assert_eq!(code, 550);
    assert_eq!(c.cmd("RCPT TO:<bob@example.org>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(&message("bob@example.org", "bob@example.org", "tok-forged"));
    let (code, t) = c.cmd(".");
    assert_eq!(code, 550, "{t}");
    assert!(t.contains("5.7.1"), "{t}");
    // The session goes on: a correct message after the refusal is accepted.
    assert_eq!(
        send_mail(&mut c, "alice@example.org", "bob@example.org", "tok-after").0,
        250
    );
}

#[test]
fn connection_without_header_or_from_untrusted_source_or_bad_hmac_is_closed() {
    let srv = Server::new(Opts::default());
    let mut c = Client::connect(srv.submission, None);
    c.send("EHLO x\r\n");
    assert!(
        c.closed_silently(),
        "no PROXY header must close without a greeting"
    );

    let srv2 = Server::new(Opts {
        trusted: "10.0.0.0/8",
        ..Opts::default()
    });
    let mut c = Client::connect(srv2.submission, Some(&proxy_header(None, None)));
    assert!(c.closed_silently(), "untrusted source must be closed");

    let srv3 = Server::new(Opts {
        secret: Some("s3cret-0123456789abcdef"),
        ..Opts::default()
    });
    let id = || Some(identity("alice@example.org"));
    let mut c = Client::connect(srv3.submission, Some(&proxy_header(id(), Some(b"wrong"))));
    assert!(c.closed_silently(), "wrong HMAC must be closed");
    let mut c = Client::connect(srv3.submission, Some(&proxy_header(id(), None)));
    assert!(c.closed_silently(), "missing HMAC must be closed");
    // The right secret (file content without its newline) is accepted.
    let mut c = Client::open(
        srv3.submission,
        Some(&proxy_header(id(), Some(b"s3cret-0123456789abcdef"))),
    );
    c.cmd("EHLO x");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").0, 250);
}

#[test]
fn bad_input_gets_the_right_replies() {
    let srv = Server::new(Opts::default());
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(srv.submission, Some(&h()));
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.org>").0,
        503,
        "MAIL before EHLO"
    );
    c.cmd("EHLO x");
    assert_eq!(
        c.cmd("RCPT TO:<bob@example.org>").0,
        503,
        "RCPT before MAIL"
    );
    assert_eq!(c.cmd("DATA").0, 503, "DATA before MAIL");
    let long = "NOOP ".to_string() + &"x".repeat(10_000);
    let (code, t) = c.cmd(&long);
    assert_eq!(code, 500, "{t}");
    c.send("NOOP\n");
    assert_eq!(c.reply().0, 500, "bare LF");
    assert_eq!(c.cmd("FOO bar").0, 500);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org> SIZE=999999999").0, 552);
    // Pipelined: good and bad commands in one write, replies in order.
    c.send("NOOP\r\nBLAH\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\n");
    let codes: Vec<u16> = (0..6).map(|_| c.reply().0).collect();
    assert_eq!(codes, vec![250, 500, 250, 250, 550, 354]);
    // Oversize message: read fully, refused with 552, session continues.
    let big = format!(
        "From: <alice@example.org>\r\n\r\n{}\r\n.\r\n",
        "y".repeat(200_000)
    );
    c.send(&big);
    let (code, t) = c.reply();
    assert_eq!(code, 552, "{t}");
    // Bare LF inside a message (SMTP smuggling shape) is refused.
    c.cmd("MAIL FROM:<alice@example.org>");
    c.cmd("RCPT TO:<bob@example.org>");
    assert_eq!(c.cmd("DATA").0, 354);
    c.send("From: <alice@example.org>\r\n\r\nx\n.\nMAIL FROM:<bob@example.org>\r\n.\r\n");
    let (code, t) = c.reply();
    assert_eq!(code, 550, "{t}");
    assert_eq!(c.cmd("NOOP").0, 250, "session still alive");
    // Garbage without end: the server ends the session after too many errors.
    let mut g = Client::open(srv.submission, Some(&h()));
    // One write: the server may close after the 20th line, and a second
    // write into a closed connection would fail on our side.
    g.send(&"\x01\x02garbage\r\n".repeat(25));
    let mut last = 0;
    while let Some((code, _)) = g.try_reply() {
        last = code;
    }
    assert_eq!(last, 421);
    // Raw binary with NUL bytes and no line ends never breaks the server.
    let mut b = Client::open(srv.submission, Some(&h()));
    b.send_bytes(&[0u8; 20_000]);
    b.send("\r\nNOOP\r\n");
    assert_eq!(b.reply().0, 500);
    assert_eq!(b.reply().0, 250);
    // And it still serves new sessions.
    let mut c = Client::open(srv.submission, Some(&h()));
    assert_eq!(c.cmd("EHLO x").0, 250);
}

#[test]
fn several_local_recipients_get_one_copy_each() {
    let mut srv = Server::new(Opts::default());
    let h = || proxy_header(Some(identity("alice@example.org")), Some(SECRET));
    let mut c = Client::open(srv.submission, Some(&h()));
    c.cmd("EHLO x");
    c.cmd("MAIL FROM:<alice@example.org>");
    assert_eq!(c.cmd("RCPT TO:<bob@example.org>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").0, 250);
    c.cmd("DATA");
    c.send(&message(
        "alice@example.org",
        "bob@example.org",
        "tok-multi",
    ));
    assert_eq!(c.cmd(".").0, 250);
    let st = srv.stop_and_open_store();
    assert_eq!(count_token(&st, "bob@example.org", "tok-multi"), 1);
    assert_eq!(count_token(&st, "alice@example.org", "tok-multi"), 1);
}
