//! `POST /mxdeliv`: delivery from another chatmail relay over HTTPS, in the
//! wire format chatmail relays and Madmail use (chatmail/relay routes
//! `location /mxdeliv` to filtermail's HTTP side; Madmail's
//! `crates/chatmail-fed/src/mxdeliv.rs`): the message as the body (raw
//! RFC 5322 bytes), the envelope sender in `X-Mail-From` (empty for a
//! bounce), one `X-Mail-To` header per recipient; `200 OK` once delivered.
//!
//! The message goes through the bundled MX's own session, in process over
//! an in-memory pipe, so it meets exactly the MX's rules: a
//! DKIM signature valid and aligned with `From:`, the chatmail encryption
//! rule, known recipients, quota and size; it gets the same
//! `Authentication-Results` header and the same log lines. The HTTPS
//! connection counts as TLS for `mail.mx.require_tls`; the session's client
//! is the HTTPS client's address.
//!
//! Answers ([`status_for`]): `200` delivered to every recipient; otherwise
//! nothing was delivered and the body is the MX's SMTP reply: `413` too
//! large, `507` a mailbox full, `400` a malformed request, `403` any other
//! refusal (DKIM, encryption, unknown recipient: the sender's SMTP retry
//! then gets the per-recipient answer), `503` a temporary failure (also
//! when the client address already has `mail.mx.max_connections_per_peer`
//! MX sessions, on port 25 and here together). Without
//! an MX in this process (no `mail.inbound`): `404`, as for any unknown
//! path; with one that has not started yet: `503`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::log_safe::Escaped;
use crate::mail::message::dot_stuff;
use crate::mail::peer::PeerInfo;
use crate::mail::smtp::SmtpContext;
use crate::smtp_reply::read_reply;

pub use crate::mail::delivery::mxdeliv::{MAIL_FROM, MAIL_TO};
/// Most recipients in one request (the MX's limit per transaction).
pub const MAX_RECIPIENTS: usize = crate::mail::smtp::session::MAX_RECIPIENTS;
/// Longest address accepted in either header (RFC 5321 §4.5.3.1: 64 + 1 +
/// 255).
pub const MAX_ADDRESS: usize = 320;
/// Reading the body (a slow sender holds one connection, not the relay).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(300);
/// The whole in-process SMTP conversation (DKIM lookups included).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a request carries, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
}

/// A request that cannot be delivered as it is: the status and the text.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub text: String,
}

impl Refusal {
    fn bad(text: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            text: text.into(),
        }
    }
}

/// An address as a header gives it: printable, no spaces, no angle
/// brackets, at most [`MAX_ADDRESS`] bytes; recipients need an `@`.
fn address(v: &[u8], recipient: bool) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let ok = s.len() <= MAX_ADDRESS
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '<' && c != '>')
        && (!recipient
            || s.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()));
    ok.then(|| s.to_owned())
}

/// The envelope of a request from its headers.
pub fn envelope(headers: &HeaderMap) -> Result<Envelope, Refusal> {
    let from = match headers.get(MAIL_FROM) {
        None => String::new(),
        Some(v) => address(v.as_bytes(), false)
            .ok_or_else(|| Refusal::bad("X-Mail-From is not an address"))?,
    };
    let mut to = Vec::new();
    for v in headers.get_all(MAIL_TO) {
        if to.len() == MAX_RECIPIENTS {
            return Err(Refusal::bad(format!(
                "more than {MAX_RECIPIENTS} X-Mail-To headers"
            )));
        }
        to.push(
            address(v.as_bytes(), true)
                .ok_or_else(|| Refusal::bad("X-Mail-To is not an address"))?,
        );
    }
    if to.is_empty() {
        return Err(Refusal::bad("missing X-Mail-To"));
    }
    Ok(Envelope { from, to })
}

/// The HTTP status for the SMTP reply that ended a delivery.
pub fn status_for(code: u16, text: &str) -> StatusCode {
    let enhanced = text.split_whitespace().next().unwrap_or("");
    match code {
        200..=299 => StatusCode::OK,
        552 | 452 if enhanced.ends_with(".2.2") => StatusCode::INSUFFICIENT_STORAGE,
        552 | 554 if enhanced.ends_with(".3.4") => StatusCode::PAYLOAD_TOO_LARGE,
        500..=504 => StatusCode::BAD_REQUEST,
        400..=499 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    }
}

/// Bare LF line ends made CRLF (what an SMTP sender's MTA would send).
fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 50);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Answer one `POST /mxdeliv` with the MX of `mx`, from `client`.
pub async fn handle(
    req: Request<Incoming>,
    mx: &Arc<SmtpContext>,
    client: SocketAddr,
) -> (StatusCode, String) {
    let env = match envelope(req.headers()) {
        Ok(e) => e,
        Err(r) => return (r.status, r.text),
    };
    // One MX session for the whole request, counted with the port-25 ones.
    let _permit = match mx.per_peer.as_ref().map(|l| l.try_acquire(client.ip())) {
        Some(None) => {
            tracing::warn!(refused = "peer_limit", client = %client, "mxdeliv: too many MX sessions from this address");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "421 4.7.0 Too many connections from your address, try again later".to_owned(),
            );
        }
        Some(Some(p)) => Some(p),
        None => None,
    };
    let limit = mx.cfg.max_message_size;
    let too_big = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("552 5.3.4 Message too big (at most {limit} bytes)"),
        )
    };
    // A declared length over the limit is refused before the body is read
    // (a client sending `Expect: 100-continue` then sends none of it).
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_big();
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), limit).collect());
    let body = match read.await {
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!("the body took longer than {}s", BODY_TIMEOUT.as_secs()),
            )
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_big(),
        Ok(Err(e)) => return (StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let (code, text) = match tokio::time::timeout(
        DELIVERY_TIMEOUT,
        deliver(mx.clone(), client, &env, &crlf(&body)),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => (451, "4.4.2 delivery timed out".to_owned()),
    };
    let status = status_for(code, &text);
    tracing::info!(
        client = %client,
        from = %Escaped(&env.from),
        rcpts = env.to.len(),
        size = body.len(),
        status = status.as_u16(),
        reply = %Escaped(&format!("{code} {text}")),
        "mxdeliv"
    );
    (
        status,
        if code < 300 {
            "OK".to_owned()
        } else {
            format!("{code} {text}")
        },
    )
}

/// Hand the message to an MX session over an in-memory pipe; the reply
/// that ended it (the end of data's on success).
async fn deliver(
    mx: Arc<SmtpContext>,
    client: SocketAddr,
    env: &Envelope,
    msg: &[u8],
) -> (u16, String) {
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let peer = PeerInfo {
        tls: true,
        ..PeerInfo::direct(crate::mail::peer::Source::Tcp(client))
    };
    let session = tokio::spawn(async move {
        let _ = crate::mail::smtp::serve(theirs, peer, mx).await;
    });
    let mut buf = Vec::new();
    let helo = match client.ip() {
        std::net::IpAddr::V4(a) => format!("[{a}]"),
        std::net::IpAddr::V6(a) => format!("[IPv6:{a}]"),
    };
    let utf8 = !env.from.is_ascii() || env.to.iter().any(|t| !t.is_ascii());
    let mut steps: Vec<Step> = vec![
        (format!("EHLO {helo}\r\n").into_bytes(), two),
        (
            format!(
                "MAIL FROM:<{}>{}\r\n",
                env.from,
                if utf8 { " SMTPUTF8" } else { "" }
            )
            .into_bytes(),
            two,
        ),
    ];
    for t in &env.to {
        steps.push((format!("RCPT TO:<{t}>\r\n").into_bytes(), two));
    }
    steps.push((b"DATA\r\n".to_vec(), |c| c == 354));
    steps.push((dot_stuff(msg), two));
    let mut last = (451, "4.3.0 no reply".to_owned());
    let mut ok = match read_reply(&mut ours, &mut buf).await {
        Ok(r) => two(r.code),
        Err(_) => false,
    };
    if ok {
        for (line, accept) in steps {
            if ours.write_all(&line).await.is_err() {
                ok = false;
                break;
            }
            match read_reply(&mut ours, &mut buf).await {
                Ok(r) => {
                    last = (r.code, r.lines.join(" "));
                    if !accept(r.code) {
                        ok = false;
                        break;
                    }
                }
                Err(e) => {
                    last = (451, format!("4.3.0 {e}"));
                    ok = false;
                    break;
                }
            }
        }
    }
    let _ = ours.write_all(b"QUIT\r\n").await;
    drop(ours);
    let _ = session.await;
    if !ok && last.0 < 400 {
        last = (451, format!("4.3.0 unexpected reply {} {}", last.0, last.1));
    }
    last
}

/// A command to send and the reply codes that let the conversation go on.
type Step = (Vec<u8>, fn(u16) -> bool);

fn two(c: u16) -> bool {
    (200..300).contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(from: Option<&str>, to: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(f) = from {
            h.insert(MAIL_FROM, HeaderValue::from_str(f).unwrap());
        }
        for t in to {
            h.append(MAIL_TO, HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn envelopes_are_read_and_checked() {
        assert_eq!(
            envelope(&headers(Some("a@x.test"), &["b@y.test", "c@y.test"])),
            Ok(Envelope {
                from: "a@x.test".into(),
                to: vec!["b@y.test".into(), "c@y.test".into()],
            })
        );
        // A bounce has no sender.
        assert_eq!(envelope(&headers(None, &["b@y.test"])).unwrap().from, "");
        for bad in [
            headers(Some("a@x.test"), &[]),
            headers(Some("a@x.test"), &["no-at-sign"]),
            headers(Some("a@x.test"), &["b@y.test> NOTIFY=NEVER"]),
            headers(Some("<a@x.test>"), &["b@y.test"]),
            headers(Some("a@x.test"), &["@y.test"]),
        ] {
            let r = envelope(&bad).unwrap_err();
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        }
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@y.test"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(envelope(&headers(Some("a@x.test"), &many)).is_err());
    }

    #[test]
    fn smtp_replies_map_to_statuses() {
        assert_eq!(status_for(250, "2.0.0 Ok"), StatusCode::OK);
        assert_eq!(
            status_for(552, "5.2.2 Mailbox full"),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            status_for(552, "5.3.4 Message too big"),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status_for(550, "5.7.1 No valid DKIM signature"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_for(550, "5.1.1 No such user here"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status_for(523, "Encryption Needed"), StatusCode::FORBIDDEN);
        assert_eq!(status_for(501, "5.5.4 Syntax"), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_for(451, "4.3.0 try later"),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}
