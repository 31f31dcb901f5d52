//! The XCLIENT prelude: hand a pinned key's identity to Postfix.
//!
//! On a route with `identity: xclient`, the front door speaks the first few
//! SMTP lines to Postfix itself before it relays any client byte: it reads the
//! greeting, sends `EHLO`, checks that `XCLIENT` is offered with the
//! attributes it needs, sends
//! `XCLIENT LOGIN=… NAME=[UNAVAILABLE] ADDR=… PORT=…`, and reads the fresh
//! `220` greeting Postfix answers with. That greeting is what the client
//! sees as its own greeting; from there on the bytes are relayed untouched, and
//! Postfix treats the session as SASL-authenticated as `LOGIN` (so
//! `reject_sender_login_mismatch` applies) and as coming from `ADDR`.
//!
//! Postfix's `XCLIENT_README` is the contract. Postfix 3.7 re-checks
//! `smtpd_authorized_xclient_hosts` against the *new* client address after an
//! XCLIENT, so a client whose own address is not in that list cannot send a
//! second XCLIENT of its own. The shipped service (`deploy/postfix/master.cf`)
//! listens on a UNIX-domain socket, whose peer Postfix calls `127.0.0.1`
//! (`::1` with IPv6 only), and authorizes exactly that. A client that reaches
//! the front door from loopback therefore must not be handed on as
//! `ADDR=127.0.0.1`: every loopback client address goes out as
//! `ADDR=[UNAVAILABLE]` ([`xclient_addr`]), which matches no address pattern,
//! so the re-check refuses that client's own XCLIENT too.
//!
//! Invariants:
//! - replies are parsed and read by the one SMTP reply client
//!   ([`crate::smtp_reply`]: pure parser, explicit "need more bytes" result,
//!   hard limits);
//! - Postfix sends nothing after its reply to `XCLIENT` until spoken to, so
//!   any byte read beyond that reply is an error, never relayed;
//! - the whole prelude runs under one deadline;
//! - the login is xtext-encoded (RFC 3461 §4) and bounded, and the EHLO name
//!   is one printable word, so neither can inject an attribute or a command.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::smtp_reply::{self, ReadError, Reply, ReplyError};
/// Longest login sent; Postfix limits a whole command line to 2048 bytes by
/// default (`line_length_limit`), and addresses are at most 254 octets.
pub const MAX_LOGIN: usize = 255;
/// Attributes the prelude sends, which `EHLO` must list after `XCLIENT`.
pub const NEEDED_ATTRIBUTES: [&str; 4] = ["LOGIN", "NAME", "ADDR", "PORT"];
/// The XCLIENT value for "not known" (Postfix `XCLIENT_README`).
pub const UNAVAILABLE: &str = "[UNAVAILABLE]";

/// Which step of the prelude an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Xclient,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Xclient => "XCLIENT",
        })
    }
}

/// Whose fault a failed prelude is, which picks the log wording and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The backend is down, slow, or spoke broken SMTP.
    Backend,
    /// The backend works but is not set up for XCLIENT from us (Postfix's
    /// `smtpd_authorized_xclient_hosts`), or the registry login is unusable.
    Configuration,
}

/// Why the prelude failed. Never the client's fault: the client has not sent
/// a byte yet.
#[derive(Debug, thiserror::Error)]
pub enum XclientError {
    #[error("backend I/O error during the XCLIENT prelude: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend did not finish the XCLIENT prelude within {0:?}")]
    Timeout(Duration),
    #[error("backend closed the connection during the {0}")]
    Closed(Stage),
    #[error("backend sent a malformed SMTP reply during the {stage}: {detail}")]
    Malformed { stage: Stage, detail: ReplyError },
    #[error("backend sent bytes after its greeting before EHLO")]
    EarlyTalker,
    #[error("backend refused the {stage}: {reply}")]
    Refused { stage: Stage, reply: String },
    #[error("backend does not offer XCLIENT to the front door (is its address in Postfix's smtpd_authorized_xclient_hosts?)")]
    NotOffered,
    #[error("backend's XCLIENT lacks the {0} attribute")]
    MissingAttribute(&'static str),
    #[error("backend sent {0} bytes nobody asked for after the XCLIENT reply")]
    TrailingBytes(usize),
    #[error("login {0:?} cannot be sent with XCLIENT (empty or longer than {MAX_LOGIN} bytes)")]
    BadLogin(String),
    #[error("EHLO name {0:?} is not one printable ASCII word")]
    BadHeloName(String),
}

impl XclientError {
    /// Whose fault it is: see [`Fault`].
    pub fn fault(&self) -> Fault {
        match self {
            XclientError::NotOffered
            | XclientError::MissingAttribute(_)
            | XclientError::BadLogin(_)
            | XclientError::BadHeloName(_) => Fault::Configuration,
            XclientError::Refused {
                stage: Stage::Xclient,
                reply,
            } if reply.starts_with("550") => Fault::Configuration,
            _ => Fault::Backend,
        }
    }
}

/// xtext (RFC 3461 §4): printable ASCII except `+` and `=` as is, every
/// other byte as `+XX` with upper-case hex.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The `ADDR` value: dotted quad, or `IPV6:` + the address (XCLIENT_README).
/// An IPv4-mapped IPv6 address is sent as the IPv4 address it stands for,
/// and a loopback address as `[UNAVAILABLE]` (see the module comment).
pub fn xclient_addr(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        // Postfix would match a loopback ADDR against the address it gives
        // UNIX-domain peers (the front door itself), and the client could
        // then send an XCLIENT of its own. `[UNAVAILABLE]` matches nothing.
        return UNAVAILABLE.to_string();
    }
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPV6:{v6}"),
    }
}

/// The XCLIENT command line, CRLF included. Without a login only the
/// address is handed over and the client must still authenticate.
pub fn xclient_command(login: Option<&str>, client: SocketAddr) -> Result<String, XclientError> {
    let login = match login {
        Some(l) if l.is_empty() || l.len() > MAX_LOGIN => {
            return Err(XclientError::BadLogin(l.to_string()));
        }
        Some(l) => format!("LOGIN={} ", xtext_encode(l)),
        None => String::new(),
    };
    // NAME=[UNAVAILABLE]: without it Postfix keeps the front door's host
    // name for the session, in its logs and in any name-based access rule
    // (smtpd_authorized_xclient_hosts included).
    Ok(format!(
        "XCLIENT {login}NAME=[UNAVAILABLE] ADDR={} PORT={}\r\n",
        xclient_addr(client.ip()),
        client.port()
    ))
}

/// Check that an EHLO reply offers XCLIENT with every attribute we send.
pub fn check_ehlo(reply: &Reply) -> Result<(), XclientError> {
    // The first line is the server's name; keywords follow (RFC 5321 §4.1.1.1).
    let attrs: Vec<String> = reply
        .lines
        .iter()
        .skip(1)
        .find_map(|l| {
            let mut words = l.split_ascii_whitespace();
            match words.next() {
                Some(k) if k.eq_ignore_ascii_case("XCLIENT") => {
                    Some(words.map(|w| w.to_ascii_uppercase()).collect())
                }
                _ => None,
            }
        })
        .ok_or(XclientError::NotOffered)?;
    for needed in NEEDED_ATTRIBUTES {
        if !attrs.iter().any(|a| a == needed) {
            return Err(XclientError::MissingAttribute(needed));
        }
    }
    Ok(())
}

/// Read exactly one reply; bytes after it stay in `buf` for the caller.
async fn read_reply<S: AsyncRead + Unpin>(
    backend: &mut S,
    buf: &mut Vec<u8>,
    stage: Stage,
) -> Result<Reply, XclientError> {
    smtp_reply::read_reply(backend, buf)
        .await
        .map_err(|e| match e {
            ReadError::Io(e) => XclientError::Io(e),
            ReadError::Closed => XclientError::Closed(stage),
            ReadError::Malformed(detail) => XclientError::Malformed { stage, detail },
        })
}

fn expect(reply: Reply, code: u16, stage: Stage) -> Result<Reply, XclientError> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(XclientError::Refused {
            stage,
            reply: reply.summary(),
        })
    }
}

/// Run the XCLIENT prelude on a fresh backend connection and return the
/// greeting bytes the client must get instead of the backend's first one.
///
/// `login` is the registry login of the pinned key, `client` the client's
/// real address, `helo_name` the name the front door greets with.
pub async fn xclient_prelude<S: AsyncRead + AsyncWrite + Unpin>(
    backend: &mut S,
    login: &str,
    client: SocketAddr,
    helo_name: &str,
    timeout: Duration,
) -> Result<Vec<u8>, XclientError> {
    xclient_prelude_for(backend, Some(login), client, helo_name, timeout).await
}

/// [`xclient_prelude`] for any client on an XCLIENT route. A client without a
/// pinned key still gets the prelude (with `ADDR`/`PORT`, no `LOGIN`): that
/// moves Postfix's idea of the client off the front door's address, so the
/// client cannot send an XCLIENT of its own (Postfix re-checks
/// `smtpd_authorized_xclient_hosts` against the new address).
pub async fn xclient_prelude_for<S: AsyncRead + AsyncWrite + Unpin>(
    backend: &mut S,
    login: Option<&str>,
    client: SocketAddr,
    helo_name: &str,
    timeout: Duration,
) -> Result<Vec<u8>, XclientError> {
    // Build the command first: a bad login is a configuration error and must
    // not cost a backend round trip.
    let command = xclient_command(login, client)?;
    if helo_name.is_empty()
        || helo_name.len() > MAX_LOGIN
        || !helo_name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(XclientError::BadHeloName(helo_name.to_string()));
    }
    match tokio::time::timeout(timeout, prelude(backend, &command, helo_name)).await {
        Ok(result) => result,
        Err(_) => Err(XclientError::Timeout(timeout)),
    }
}

async fn prelude<S: AsyncRead + AsyncWrite + Unpin>(
    backend: &mut S,
    command: &str,
    helo_name: &str,
) -> Result<Vec<u8>, XclientError> {
    let mut buf = Vec::with_capacity(1024);
    expect(
        read_reply(backend, &mut buf, Stage::Greeting).await?,
        220,
        Stage::Greeting,
    )?;
    if !buf.is_empty() {
        // An honest server waits for EHLO; anything else is a broken or
        // hostile backend (or a pre-greeting "early talker" mix-up).
        return Err(XclientError::EarlyTalker);
    }
    backend
        .write_all(format!("EHLO {helo_name}\r\n").as_bytes())
        .await?;
    backend.flush().await?;
    let ehlo = expect(
        read_reply(backend, &mut buf, Stage::Ehlo).await?,
        250,
        Stage::Ehlo,
    )?;
    check_ehlo(&ehlo)?;
    backend.write_all(command.as_bytes()).await?;
    backend.flush().await?;
    let greeting = expect(
        read_reply(backend, &mut buf, Stage::Xclient).await?,
        220,
        Stage::Xclient,
    )?;
    if !buf.is_empty() {
        return Err(XclientError::TrailingBytes(buf.len()));
    }
    Ok(greeting.raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::io::{duplex, AsyncBufReadExt, AsyncReadExt, BufReader};

    const GREETING: &[u8] = b"220 mail.example.org ESMTP Postfix\r\n";
    const EHLO_REPLY: &[u8] = b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-AUTH PLAIN\r\n250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT\r\n\
250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n";

    fn client() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 50123)
    }

    /// A scripted server: sends `greeting`, then for each expected command
    /// line checks it byte for byte and sends the paired answer. Returns
    /// the lines it received.
    async fn fake_server(
        io: tokio::io::DuplexStream,
        greeting: &'static [u8],
        script: Vec<(&'static str, &'static [u8])>,
    ) -> Vec<String> {
        let (r, mut w) = tokio::io::split(io);
        let mut r = BufReader::new(r);
        let mut seen = Vec::new();
        w.write_all(greeting).await.unwrap();
        for (expected, answer) in script {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            assert_eq!(line, expected);
            seen.push(line);
            w.write_all(answer).await.unwrap();
        }
        seen
    }

    #[tokio::test]
    async fn full_prelude_exact_bytes() {
        let (mut ours, theirs) = duplex(4096);
        let fresh: &[u8] = b"220-mail.example.org ESMTP Postfix\r\n220 welcome again\r\n";
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![
                ("EHLO frontdoor.example.org\r\n", EHLO_REPLY),
                (
                    "XCLIENT LOGIN=alice+2Bkey@example.org NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=50123\r\n",
                    fresh,
                ),
            ],
        ));
        let got = xclient_prelude(
            &mut ours,
            "alice+key@example.org",
            client(),
            "frontdoor.example.org",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(got, fresh);
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn ipv6_client_address() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![
                ("EHLO fd\r\n", EHLO_REPLY),
                (
                    "XCLIENT LOGIN=bob@example.org NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::5 PORT=443\r\n",
                    GREETING,
                ),
            ],
        ));
        let v6 = SocketAddr::new(IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap()), 443);
        let got = xclient_prelude(
            &mut ours,
            "bob@example.org",
            v6,
            "fd",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(got, GREETING);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn anonymous_client_gets_addr_only() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![
                ("EHLO fd\r\n", EHLO_REPLY),
                (
                    "XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=50123\r\n",
                    GREETING,
                ),
            ],
        ));
        let got = xclient_prelude_for(&mut ours, None, client(), "fd", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, GREETING);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn xclient_not_offered_is_a_configuration_error() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![(
                "EHLO fd\r\n",
                b"250-mail.example.org\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
            )],
        ));
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, XclientError::NotOffered), "{err}");
        assert_eq!(err.fault(), Fault::Configuration);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn missing_login_attribute() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![("EHLO fd\r\n", b"250-m\r\n250 XCLIENT ADDR PORT NAME\r\n")],
        ));
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, XclientError::MissingAttribute("LOGIN")),
            "{err}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn xclient_refused_550() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![
                ("EHLO fd\r\n", EHLO_REPLY),
                (
                    "XCLIENT LOGIN=a@b NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=50123\r\n",
                    b"550 5.7.0 Error: insufficient authorization\r\n",
                ),
            ],
        ));
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        match &err {
            XclientError::Refused { stage, reply } => {
                assert_eq!(*stage, Stage::Xclient);
                assert_eq!(reply, "550 5.7.0 Error: insufficient authorization");
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.fault(), Fault::Configuration);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn greeting_554_is_refused_by_backend() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(theirs, b"554 5.3.2 go away\r\n", vec![]));
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                XclientError::Refused {
                    stage: Stage::Greeting,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.fault(), Fault::Backend);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn closed_and_garbage_and_timeout() {
        // Closed before greeting.
        let (mut ours, theirs) = duplex(64);
        drop(theirs);
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, XclientError::Closed(Stage::Greeting)),
            "{err}"
        );

        // Garbage greeting.
        let (mut ours, mut theirs) = duplex(64);
        theirs.write_all(b"HTTP/1.1 400 Bad\r\n").await.unwrap();
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, XclientError::Malformed { .. }), "{err}");

        // Silent backend: the deadline fires.
        let (mut ours, _theirs) = duplex(64);
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, XclientError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn trailing_bytes_after_fresh_greeting() {
        let (mut ours, theirs) = duplex(4096);
        let server = tokio::spawn(fake_server(
            theirs,
            GREETING,
            vec![
                ("EHLO fd\r\n", EHLO_REPLY),
                (
                    "XCLIENT LOGIN=a@b NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=50123\r\n",
                    b"220 hi\r\n250 surprise\r\n",
                ),
            ],
        ));
        let err = xclient_prelude(&mut ours, "a@b", client(), "fd", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, XclientError::TrailingBytes(14)), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn bad_login_or_helo_name_sends_nothing() {
        let (mut ours, mut theirs) = duplex(4096);
        let long = "x".repeat(MAX_LOGIN + 1);
        for login in ["", long.as_str()] {
            let err = xclient_prelude(&mut ours, login, client(), "fd", Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(matches!(err, XclientError::BadLogin(_)), "{err}");
        }
        let err = xclient_prelude(
            &mut ours,
            "a@b",
            client(),
            "fd\r\nRSET",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, XclientError::BadHeloName(_)), "{err}");
        assert_eq!(err.fault(), Fault::Configuration);
        drop(ours);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).await.unwrap();
        assert!(sent.is_empty());
    }

    #[test]
    fn xtext_and_addr() {
        assert_eq!(xtext_encode("alice@example.org"), "alice@example.org");
        assert_eq!(xtext_encode("a+b=c d\r\n"), "a+2Bb+3Dc+20d+0D+0A");
        assert_eq!(xtext_encode("é"), "+C3+A9");
        assert_eq!(
            xclient_addr(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))),
            "198.51.100.2"
        );
        assert_eq!(
            xclient_addr("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1"
        );
        assert_eq!(
            xclient_addr("2001:db8::5".parse().unwrap()),
            "IPV6:2001:db8::5"
        );
    }

    #[test]
    fn loopback_clients_go_out_unavailable() {
        for ip in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(xclient_addr(ip.parse().unwrap()), "[UNAVAILABLE]", "{ip}");
        }
        let c: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            xclient_command(Some("alice@example.org"), c).unwrap(),
            "XCLIENT LOGIN=alice@example.org NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PORT=40000\r\n"
        );
    }
}
