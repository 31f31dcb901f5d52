//! HTTPS delivery to another chatmail relay (`mail.delivery.mxdeliv`, on by
//! default in chatmail mode): `POST https://<domain>/mxdeliv` with the
//! queued (DKIM-signed) message as the body, the envelope sender in
//! `X-Mail-From` and one `X-Mail-To` per recipient of that domain, the
//! wire format chatmail relays and Madmail serve (the server side is
//! `web::mxdeliv`).
//!
//! - Only `200` counts as delivered, for every recipient of the request.
//! - Anything else hands the message to SMTP on port 25 in the same attempt
//!   ([`PostError::Failed`]): the peer's MX then gives its per-recipient
//!   answer, and a refusal there produces the delivery report.
//! - A peer without the path (no HTTPS at all, `404`, `405`, `501`) is
//!   remembered for [`UNSUPPORTED_FOR`] ([`Unsupported`]), and SMTP is used
//!   straight away until then.
//! - The certificate is checked as `mail.delivery.tls` says for the SMTP
//!   peers, for the domain's name; under an `enforce` MTA-STS policy it
//!   must verify whatever that setting is.
//! - The whole request runs within [`POST_TIMEOUT`]; the answer's body is
//!   read up to [`MAX_ANSWER`] bytes, for the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::StatusCode;

use super::https::{self, HttpsError};
use crate::log_safe::Escaped;

/// The path on the peer.
pub const PATH: &str = "/mxdeliv";
/// The header naming the envelope sender (empty for a bounce).
pub const MAIL_FROM: &str = "x-mail-from";
/// The header naming one recipient (repeated for each).
pub const MAIL_TO: &str = "x-mail-to";
/// The whole request: connect, TLS, the body up, the answer back.
pub const POST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a peer without `/mxdeliv` is sent SMTP only.
pub const UNSUPPORTED_FOR: Duration = Duration::from_secs(3600);
/// Most bytes of an answer's body kept.
pub const MAX_ANSWER: usize = 1024;
/// Most domains remembered as unsupported (the oldest mark goes first).
pub const MAX_REMEMBERED: usize = 10_000;

/// Why a message did not go over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The peer does not serve `/mxdeliv`.
    #[error("no HTTPS delivery at {0}")]
    Unsupported(String),
    /// It does, and did not take this message now.
    #[error("HTTPS delivery failed: {0}")]
    Failed(String),
}

/// What one request says about the peer.
pub fn classify(status: StatusCode, body: &[u8], url: &str) -> Result<(), PostError> {
    let text = String::from_utf8_lossy(body);
    let text = Escaped(text.trim()).to_string();
    match status.as_u16() {
        200 => Ok(()),
        404 | 405 | 501 => Err(PostError::Unsupported(format!("{url} answered {status}"))),
        _ => Err(PostError::Failed(format!(
            "{url} answered {status}: {text}"
        ))),
    }
}

/// One message for one domain's relay.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The recipients' domain (the host posted to).
    pub domain: &'a str,
    /// The peer's HTTPS port (`mail.delivery.https_port`).
    pub port: u16,
    /// The envelope sender.
    pub from: &'a str,
    /// The recipients there.
    pub rcpts: &'a [String],
}

/// Post `msg` as `p` says, within [`POST_TIMEOUT`].
pub async fn post(
    resolver: &hickory_resolver::TokioResolver,
    tls: &tokio_rustls::TlsConnector,
    p: Post<'_>,
    msg: Vec<u8>,
) -> Result<(), PostError> {
    let url = format!("https://{}{PATH}", p.domain);
    match tokio::time::timeout(POST_TIMEOUT, post_inner(resolver, tls, p, msg, &url)).await {
        Ok(r) => r,
        Err(_) => Err(PostError::Failed(format!("{url}: timed out"))),
    }
}

async fn post_inner(
    resolver: &hickory_resolver::TokioResolver,
    tls: &tokio_rustls::TlsConnector,
    p: Post<'_>,
    msg: Vec<u8>,
    url: &str,
) -> Result<(), PostError> {
    let Post {
        domain,
        port,
        from,
        rcpts,
    } = p;
    let connected = async {
        let addrs = https::resolve(resolver, domain, port).await?;
        https::connect::<Full<Bytes>>(&addrs, tls, domain).await
    }
    .await;
    let (mut sender, driver) = match connected {
        Ok(c) => c,
        // Nothing listens there, or the name has no address: no HTTPS side.
        Err(e @ (HttpsError::Connect(..) | HttpsError::Dns(..))) => {
            return Err(PostError::Unsupported(e.to_string()))
        }
        Err(e) => return Err(PostError::Failed(e.to_string())),
    };
    let mut req = hyper::Request::post(PATH)
        .header(hyper::header::HOST, domain)
        .header(hyper::header::USER_AGENT, "frontdoor mxdeliv")
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
        .header(MAIL_FROM, from);
    for r in rcpts {
        req = req.header(MAIL_TO, r.as_str());
    }
    let result = async {
        let req = req
            .body(Full::new(Bytes::from(msg)))
            .map_err(|e| PostError::Failed(format!("{url}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| PostError::Failed(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        classify(status, &body, url)
    }
    .await;
    driver.abort();
    result
}

/// Peers found without `/mxdeliv`, and until when they are sent SMTP only.
#[derive(Debug, Default)]
pub struct Unsupported {
    until: Mutex<HashMap<String, Instant>>,
}

impl Unsupported {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while `domain` is remembered as without HTTPS delivery.
    pub fn marked(&self, domain: &str) -> bool {
        let mut m = self.map();
        match m.get(domain) {
            Some(t) if *t > Instant::now() => true,
            Some(_) => {
                m.remove(domain);
                false
            }
            None => false,
        }
    }

    /// Remember `domain` as without HTTPS delivery for [`UNSUPPORTED_FOR`].
    pub fn mark(&self, domain: &str) {
        let mut m = self.map();
        if m.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            m.retain(|_, t| *t > now);
            if m.len() >= MAX_REMEMBERED {
                if let Some(k) = m.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                    m.remove(&k);
                }
            }
        }
        m.insert(domain.to_owned(), Instant::now() + UNSUPPORTED_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let u = "https://b.test/mxdeliv";
        assert_eq!(classify(StatusCode::OK, b"OK", u), Ok(()));
        for s in [404, 405, 501] {
            assert!(matches!(
                classify(StatusCode::from_u16(s).unwrap(), b"", u),
                Err(PostError::Unsupported(_))
            ));
        }
        for s in [400, 403, 413, 500, 503, 507] {
            assert!(matches!(
                classify(StatusCode::from_u16(s).unwrap(), b"no", u),
                Err(PostError::Failed(_))
            ));
        }
        // The peer's words reach the log escaped.
        let Err(PostError::Failed(t)) = classify(StatusCode::FORBIDDEN, b"bad\x1b[31m", u) else {
            panic!()
        };
        assert!(!t.contains('\x1b'), "{t}");
    }

    #[test]
    fn unsupported_peers_are_remembered_and_bounded() {
        let u = Unsupported::default();
        assert!(!u.marked("b.test"));
        u.mark("b.test");
        assert!(u.marked("b.test"));
        for i in 0..MAX_REMEMBERED + 5 {
            u.mark(&format!("d{i}.test"));
        }
        assert!(u.map().len() <= MAX_REMEMBERED);
    }
}
