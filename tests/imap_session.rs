//! IMAP sessions against `serve()` over an in-memory duplex stream, with a
//! real store and accounts in a temporary directory: the RFC 3501 session
//! flow (greeting, login, SELECT, FETCH, STORE, COPY, EXPUNGE, LOGOUT), the
//! identity rules (PREAUTH, EXTERNAL, password for another account
//! refused), untagged updates from other sessions, and IDLE waking on a
//! delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frontdoor::mail::accounts::Accounts;
use frontdoor::mail::config::MailConfig;
use frontdoor::mail::imap::session::{serve, ImapContext};
use frontdoor::mail::peer::{PeerInfo, Source};
use frontdoor::mail::store::Store;
use frontdoor::proxy_protocol::IdentityTlvs;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const T: Duration = Duration::from_secs(10);

struct Env {
    _dir: tempfile::TempDir,
    ctx: Arc<ImapContext>,
    store: Store,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MailConfig::with_data_dir(dir.path().to_owned());
    cfg.domains = vec!["example.org".into()];
    let store = Store::open(dir.path()).unwrap();
    let accounts = Accounts::new(dir.path(), &cfg.domains, false);
    accounts.add("alice@example.org", "alice-pw").unwrap();
    accounts.add("bob@example.org", "bob-pw").unwrap();
    let ctx = Arc::new(ImapContext::new(store.clone(), accounts, Arc::new(cfg)));
    Env {
        _dir: dir,
        ctx,
        store,
    }
}

fn identity(account: &str, preauth: bool) -> IdentityTlvs {
    IdentityTlvs {
        account: account.into(),
        login: account.into(),
        key_name: "phone".into(),
        fingerprint: [7; 32],
        no_imap_preauth: !preauth,
    }
}

fn peer(identity: Option<IdentityTlvs>) -> PeerInfo {
    let mut p = PeerInfo::direct(Source::Tcp("192.0.2.1:5000".parse().unwrap()));
    p.identity = identity;
    p.tls = true;
    p
}

struct Client {
    s: DuplexStream,
    buf: Vec<u8>,
    /// How long to wait for a reply.
    wait: Duration,
}

impl Client {
    fn start(e: &Env, identity: Option<IdentityTlvs>) -> Client {
        let (a, b) = tokio::io::duplex(1 << 20);
        let ctx = e.ctx.clone();
        tokio::spawn(async move {
            let _ = serve(b, peer(identity), ctx).await;
        });
        Client {
            s: a,
            buf: Vec::new(),
            wait: T,
        }
    }

    /// Read one line (CRLF stripped), with literals inlined as `{n}` + data.
    async fn line(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                let mut s = String::from_utf8_lossy(&l[..i]).into_owned();
                // A literal: append its bytes and the rest of the line.
                if let Some(n) = s
                    .strip_suffix('}')
                    .and_then(|x| x.rsplit_once('{'))
                    .and_then(|(_, n)| n.parse::<usize>().ok())
                {
                    while self.buf.len() < n {
                        self.fill(deadline).await;
                    }
                    let lit: Vec<u8> = self.buf.drain(..n).collect();
                    s.push_str("\r\n");
                    s.push_str(&String::from_utf8_lossy(&lit));
                    s.push_str(&Box::pin(self.line()).await);
                }
                return s;
            }
            self.fill(deadline).await;
        }
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, self.s.read(&mut chunk))
            .await
            .expect("server reply within the deadline")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn send(&mut self, data: &str) {
        self.s.write_all(data.as_bytes()).await.unwrap();
    }

    /// Send `tag cmd`, return all lines up to and including the tagged one.
    async fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}\r\n")).await;
        self.until(tag).await
    }

    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

fn last(v: &[String]) -> &str {
    v.last().map(|s| s.as_str()).unwrap_or("")
}

fn msg(token: &str) -> String {
    format!("From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {token}\r\nMessage-ID: <{token}@example.org>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody {token}\r\n")
}

#[tokio::test]
async fn rfc3501_session_flow_with_password_login() {
    let e = env();
    let mut c = Client::start(&e, None);
    let g = c.line().await;
    assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{g}");
    assert!(g.contains("AUTH=PLAIN") && !g.contains("AUTH=EXTERNAL") && !g.contains("STARTTLS"));

    let r = c.cmd("a001", "SELECT INBOX").await;
    assert_eq!(last(&r), "a001 BAD log in first");
    let r = c.cmd("a002", "LOGIN alice@example.org wrong").await;
    assert!(
        last(&r).starts_with("a002 NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    let r = c.cmd("a003", "LOGIN alice@example.org alice-pw").await;
    assert!(
        last(&r).starts_with("a003 OK [CAPABILITY IMAP4rev1"),
        "{r:?}"
    );
    let r = c.cmd("a004", "LOGIN alice@example.org alice-pw").await;
    assert_eq!(last(&r), "a004 BAD already logged in");

    // APPEND with a synchronising literal (RFC 3501 §6.3.11).
    let m = msg("tok1");
    c.send(&format!(
        "A003 APPEND INBOX (\\Flagged) {{{}}}\r\n",
        m.len()
    ))
    .await;
    assert_eq!(c.line().await, "+ Ready for literal data");
    c.send(&format!("{m}\r\n")).await;
    let r = c.until("A003").await;
    assert!(last(&r).starts_with("A003 OK [APPENDUID "), "{r:?}");
    // LITERAL+: no continuation.
    let m2 = msg("tok2");
    let r = c
        .cmd("A004", &format!("APPEND INBOX {{{}+}}\r\n{m2}", m2.len()))
        .await;
    assert!(last(&r).starts_with("A004 OK [APPENDUID "), "{r:?}");

    let r = c.cmd("A142", "SELECT INBOX").await;
    assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
    assert!(r.contains(&"* 0 RECENT".to_string()), "{r:?}");
    assert!(
        r.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|l| l == "* OK [UIDNEXT 3] predicted next UID"),
        "{r:?}"
    );
    assert!(
        r.iter().any(|l| l.starts_with("* OK [HIGHESTMODSEQ ")),
        "{r:?}"
    );
    assert!(r.iter().any(|l| l.starts_with("* OK [UNSEEN 1]")), "{r:?}");
    assert_eq!(last(&r), "A142 OK [READ-WRITE] SELECT completed");

    let r = c
        .cmd(
            "a005",
            "FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        )
        .await;
    assert_eq!(
        r[0],
        format!(
            "* 1 FETCH (FLAGS (\\Flagged) RFC822.SIZE {} BODY[HEADER.FIELDS (SUBJECT)] {{17}}\r\nSubject: tok1\r\n\r\n)",
            m.len()
        )
    );
    let r = c.cmd("a006", "UID FETCH 2 (BODY[TEXT])").await;
    assert_eq!(
        r[0],
        "* 2 FETCH (UID 2 BODY[TEXT] {11}\r\nbody tok2\r\n FLAGS (\\Seen))"
    );
    let r = c.cmd("a007", "FETCH 1 (ENVELOPE BODYSTRUCTURE)").await;
    assert!(r[0].contains("ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"tok1\" ((\"Alice\" NIL \"alice\" \"example.org\"))"), "{r:?}");
    assert!(
        r[0].contains("BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\")"),
        "{r:?}"
    );
    let r = c.cmd("a008", "FETCH 3 FLAGS").await;
    assert!(last(&r).starts_with("a008 BAD"), "{r:?}");

    let r = c.cmd("A003", "STORE 2 +FLAGS (\\Deleted)").await;
    assert_eq!(r[0], "* 2 FETCH (FLAGS (\\Deleted \\Seen))");
    let r = c.cmd("A004", "STORE 1 +FLAGS.SILENT ($Label)").await;
    assert_eq!(r, vec!["A004 OK STORE completed".to_string()]);
    let r = c.cmd("a009", "SEARCH FLAGGED SUBJECT tok1").await;
    assert_eq!(r[0], "* SEARCH 1");
    let r = c.cmd("a010", "UID SEARCH DELETED").await;
    assert_eq!(r[0], "* SEARCH 2");

    let r = c.cmd("A005", "CREATE Archive").await;
    assert_eq!(last(&r), "A005 OK CREATE completed");
    let r = c.cmd("A006", "UID COPY 1 Archive").await;
    assert!(last(&r).starts_with("A006 OK [COPYUID "), "{r:?}");
    let r = c.cmd("A007", "COPY 1 Nowhere").await;
    assert!(last(&r).starts_with("A007 NO [TRYCREATE]"), "{r:?}");
    let r = c.cmd("A202", "EXPUNGE").await;
    assert_eq!(r[0], "* 2 EXPUNGE");
    assert_eq!(last(&r), "A202 OK EXPUNGE completed");

    let r = c.cmd("A008", "UID MOVE 1 Archive").await;
    assert!(r[0].starts_with("* OK [COPYUID "), "{r:?}");
    assert_eq!(r[1], "* 1 EXPUNGE");
    let r = c.cmd("A682", "LIST \"\" *").await;
    assert_eq!(
        r,
        vec![
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"".to_string(),
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"".to_string(),
            "A682 OK LIST completed".to_string(),
        ]
    );
    let r = c
        .cmd("A042", "STATUS Archive (MESSAGES UIDNEXT UNSEEN)")
        .await;
    assert_eq!(r[0], "* STATUS \"Archive\" (MESSAGES 2 UIDNEXT 3 UNSEEN 2)");
    let r = c.cmd("A043", "LSUB \"\" *").await;
    assert_eq!(r[0], "* LSUB (\\HasNoChildren) \"/\" \"INBOX\"");
    let r = c.cmd("A044", "NAMESPACE").await;
    assert_eq!(r[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
    let r = c.cmd("A045", "CLOSE").await;
    assert_eq!(last(&r), "A045 OK CLOSE completed");
    let r = c.cmd("A046", "FETCH 1 FLAGS").await;
    assert_eq!(last(&r), "A046 BAD no mailbox selected");
    let r = c.cmd("A023", "LOGOUT").await;
    assert_eq!(r[0], "* BYE logging out");
    assert_eq!(last(&r), "A023 OK LOGOUT completed");
}

#[tokio::test]
async fn identity_preauth_external_and_other_account_refused() {
    let e = env();
    // Preauth on: PREAUTH greeting, already in the authenticated state.
    let mut c = Client::start(&e, Some(identity("alice@example.org", true)));
    let g = c.line().await;
    assert!(g.starts_with("* PREAUTH [CAPABILITY IMAP4rev1 "), "{g}");
    let r = c.cmd("a1", "SELECT INBOX").await;
    assert_eq!(last(&r), "a1 OK [READ-WRITE] SELECT completed");
    let r = c.cmd("a2", "LOGIN bob@example.org bob-pw").await;
    assert_eq!(last(&r), "a2 BAD already logged in");

    // Preauth off: OK greeting, EXTERNAL with an empty authzid.
    let mut c = Client::start(&e, Some(identity("alice@example.org", false)));
    let g = c.line().await;
    assert!(
        g.starts_with("* OK [CAPABILITY ") && g.contains("AUTH=EXTERNAL"),
        "{g}"
    );
    c.send("b1 AUTHENTICATE EXTERNAL\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send("\r\n").await;
    let r = c.until("b1").await;
    assert!(last(&r).starts_with("b1 OK [CAPABILITY "), "{r:?}");

    // SASL-IR with the login as authzid.
    let mut c = Client::start(&e, Some(identity("alice@example.org", false)));
    c.line().await;
    let r = c
        .cmd("c1", "AUTHENTICATE EXTERNAL YWxpY2VAZXhhbXBsZS5vcmc=")
        .await;
    assert!(last(&r).starts_with("c1 OK "), "{r:?}");

    // Another authzid, and a password for another account: refused.
    let mut c = Client::start(&e, Some(identity("alice@example.org", false)));
    c.line().await;
    let r = c
        .cmd("d1", "AUTHENTICATE EXTERNAL Ym9iQGV4YW1wbGUub3Jn")
        .await;
    assert!(last(&r).starts_with("d1 NO [AUTHORIZATIONFAILED]"), "{r:?}");
    let r = c.cmd("d2", "LOGIN bob@example.org bob-pw").await;
    assert!(
        last(&r).starts_with("d2 NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    // The same account with its password is fine.
    let r = c
        .cmd(
            "d3",
            "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAGFsaWNlLXB3",
        )
        .await;
    assert!(last(&r).starts_with("d3 OK "), "{r:?}");

    // A key whose account no longer exists opens nothing.
    let mut c = Client::start(&e, Some(identity("gone@example.org", true)));
    assert_eq!(
        c.line().await,
        "* BYE [UNAVAILABLE] the account of this client key does not exist"
    );
    assert!(e.store.list_mailboxes("gone@example.org").is_empty());

    // Without identity EXTERNAL is refused.
    let mut c = Client::start(&e, None);
    c.line().await;
    let r = c.cmd("e1", "AUTHENTICATE EXTERNAL =").await;
    assert!(
        last(&r).starts_with("e1 NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
}

#[tokio::test]
async fn updates_from_other_sessions_and_idle() {
    let e = env();
    let mut a = Client::start(&e, Some(identity("bob@example.org", true)));
    a.line().await;
    let r = a.cmd("a1", "SELECT INBOX (CONDSTORE)").await;
    assert!(r.contains(&"* 0 EXISTS".to_string()), "{r:?}");

    // A delivery between commands shows up on the next NOOP.
    e.store
        .deliver(&["bob@example.org".into()], msg("one").as_bytes())
        .unwrap();
    let r = a.cmd("a2", "NOOP").await;
    assert_eq!(r[0], "* 1 EXISTS");

    // Flags changed by another session: unsolicited FETCH with MODSEQ.
    let mut b = Client::start(&e, Some(identity("bob@example.org", true)));
    b.line().await;
    b.cmd("b1", "SELECT INBOX").await;
    b.cmd("b2", "STORE 1 +FLAGS.SILENT (\\Seen)").await;
    let r = a.cmd("a3", "NOOP").await;
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ("),
        "{r:?}"
    );
    let r = a.cmd("a4", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await;
    assert!(
        r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ ("),
        "{r:?}"
    );

    // IDLE: a delivery wakes the session within 100 ms.
    a.send("a5 IDLE\r\n").await;
    assert_eq!(a.line().await, "+ idling");
    // Timed from the moment the delivery is durable (its fsync is not IDLE's).
    e.store
        .deliver(&["bob@example.org".into()], msg("two").as_bytes())
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(a.line().await, "* 2 EXISTS");
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_millis(100),
        "IDLE woke after {waited:?}"
    );
    a.send("DONE\r\n").await;
    let r = a.until("a5").await;
    assert_eq!(last(&r), "a5 OK IDLE terminated");

    // Expunge by the other session: reported on NOOP, not during FETCH.
    b.cmd("b3", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    b.cmd("b4", "EXPUNGE").await;
    let r = a.cmd("a6", "FETCH 1:* (UID)").await;
    assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
    let r = a.cmd("a7", "NOOP").await;
    assert_eq!(r[0], "* 1 EXPUNGE");

    // METADATA as Delta Chat asks for it.
    let r = a
        .cmd("a8", "GETMETADATA \"\" (/shared/comment /shared/admin)")
        .await;
    assert_eq!(
        r[0],
        "* METADATA \"\" (/shared/comment NIL /shared/admin NIL)"
    );
    let r = a
        .cmd(
            "a9",
            "SETMETADATA \"INBOX\" (/private/devicetoken {5+}\r\nabcde)",
        )
        .await;
    assert_eq!(last(&r), "a9 OK Setmetadata completed");
    let r = a
        .cmd("a10", "GETMETADATA \"INBOX\" (/private/devicetoken)")
        .await;
    assert_eq!(
        r[0],
        "* METADATA \"INBOX\" (/private/devicetoken {5}\r\nabcde)"
    );
}

#[tokio::test]
async fn bad_input_and_limits() {
    let e = env();
    let mut c = Client::start(&e, None);
    c.line().await;
    let r = c.cmd("x1", "FROB").await;
    assert!(last(&r).starts_with("x1 BAD"), "{r:?}");
    let r = c.cmd("x2", "STARTTLS").await;
    assert!(last(&r).starts_with("x2 BAD"), "{r:?}");
    c.send("x3 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.line().await, "+ ");
    c.send("*\r\n").await;
    assert_eq!(last(&c.until("x3").await), "x3 BAD AUTHENTICATE cancelled");
    // Three failed logins close the session.
    for t in ["y1", "y2"] {
        let r = c.cmd(t, "LOGIN alice@example.org nope").await;
        assert!(last(&r).contains("NO [AUTHENTICATIONFAILED]"));
    }
    let r = c.cmd("y3", "LOGIN alice@example.org nope").await;
    assert_eq!(r[0], "* BYE too many failed logins");
}

/// Random mixes of real commands, fragments and junk, fed to one session
/// after another: the session must end cleanly (no panic) when the client
/// closes, whatever came before.
#[tokio::test]
async fn random_command_streams_never_panic() {
    const PIECES: &[&str] = &[
        "a SELECT INBOX\r\n",
        "a EXAMINE INBOX (CONDSTORE)\r\n",
        "a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE ENVELOPE)\r\n",
        "a UID FETCH 1:* (UID RFC822.SIZE BODY[]<0.10>) (CHANGEDSINCE 1)\r\n",
        "a FETCH 99 FLAGS\r\n",
        "a STORE 1 +FLAGS (\\Deleted)\r\n",
        "a UID STORE 1:* -FLAGS.SILENT (\\Seen) (UNCHANGEDSINCE 2)\r\n",
        "a EXPUNGE\r\n",
        "a UID EXPUNGE 1:*\r\n",
        "a SEARCH OR SEEN TEXT body\r\n",
        "a UID SEARCH MODSEQ 1\r\n",
        "a COPY 1:* INBOX\r\n",
        "a UID MOVE 1 Archive\r\n",
        "a CREATE Archive\r\n",
        "a DELETE Archive\r\n",
        "a RENAME INBOX Old\r\n",
        "a LIST \"\" *\r\n",
        "a LIST (SPECIAL-USE) \"\" * RETURN (STATUS (MESSAGES SIZE))\r\n",
        "a LSUB \"\" %\r\n",
        "a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)\r\n",
        "a APPEND INBOX {10+}\r\n0123456789\r\n",
        "a APPEND INBOX (\\Seen) {5}\r\n",
        "a IDLE\r\n",
        "DONE\r\n",
        "a CLOSE\r\n",
        "a UNSELECT\r\n",
        "a NOOP\r\n",
        "a ENABLE CONDSTORE\r\n",
        "a GETMETADATA \"\" (/shared/comment)\r\n",
        "a SETMETADATA INBOX (/private/x {3+}\r\nabc)\r\n",
        "a AUTHENTICATE PLAIN\r\n",
        "a LOGIN x y\r\n",
        "a LOGOUT\r\n",
        "*\r\n",
        "\r\n",
        "{999999999}\r\n",
        "a FETCH 1 (BODY[1.2.3.MIME])\r\n",
        "\u{0}\u{ff}\r\n",
        "a ",
        "(((((",
    ];
    let e = env();
    e.store
        .deliver(&["alice@example.org".into()], msg("seed").as_bytes())
        .unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for case in 0..150 {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let ctx = e.ctx.clone();
        let id = (case % 3 != 0).then(|| identity("alice@example.org", case % 2 == 0));
        let task = tokio::spawn(async move { serve(b, peer(id), ctx).await });
        let mut input = Vec::new();
        for _ in 0..(next() % 12 + 1) {
            let p = PIECES[(next() % PIECES.len() as u64) as usize];
            input.extend_from_slice(p.as_bytes());
            if next() % 5 == 0 {
                // A random cut or byte flip.
                let n = input.len();
                if n > 0 {
                    let i = (next() % n as u64) as usize;
                    input[i] = (next() & 0xff) as u8;
                }
            }
        }
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 8192];
            let _ = a.write_all(&input).await;
            let _ = a.shutdown().await;
            let deadline = Instant::now() + T;
            while Instant::now() < deadline {
                match tokio::time::timeout(T, a.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(_)) => {}
                }
            }
        });
        let res = tokio::time::timeout(T, task).await;
        let joined = res.unwrap_or_else(|_| panic!("case {case}: session did not end"));
        assert!(joined.is_ok(), "case {case}: session panicked");
        reader.await.unwrap();
    }
}

/// RFC 2177: keepalives while idling, and IDLE ends after 30 minutes
/// (virtual time: the clock is paused once the session idles).
#[tokio::test]
async fn idle_keepalive_and_thirty_minute_timeout() {
    let e = env();
    let mut c = Client::start(&e, Some(identity("alice@example.org", true)));
    c.line().await;
    c.cmd("a1", "SELECT INBOX").await;
    c.send("a2 IDLE\r\n").await;
    assert_eq!(c.line().await, "+ idling");
    tokio::time::pause();
    // Virtual time: the server's timers must fire long before this one.
    c.wait = Duration::from_secs(3600);
    let t0 = tokio::time::Instant::now();
    let mut keepalives = 0;
    loop {
        let l = c.line().await;
        if l == "* OK Still here" {
            keepalives += 1;
            continue;
        }
        assert_eq!(l, "* BYE IDLE timed out; reconnect");
        break;
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(30 * 60) && waited < Duration::from_secs(31 * 60),
        "{waited:?}"
    );
    // One every 2 minutes; the one due at 30:00 races the timeout.
    assert!((14..=15).contains(&keepalives), "{keepalives} keepalives");
}
