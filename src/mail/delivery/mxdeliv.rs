//! HTTPS delivery to another chatmail relay (`mail.delivery.mxdeliv`, on by
//! default in chatmail mode): `POST https://<domain>/mxdeliv` with the
//! queued (DKIM-signed) message as the body, the envelope sender in
//! `X-Mail-From` and one `X-Mail-To` per recipient of that domain, the
//! wire format chatmail relays and Madmail serve (the server side is
//! `web::mxdeliv`).
//!
//! - Only `200` counts as delivered, for every recipient of the request.
//! - Any other answer hands that message to SMTP on port 25 in the same
//!   attempt ([`PostError::Refused`]): the peer's MX then gives its
//!   per-recipient answer, and a refusal there produces the delivery
//!   report. A failed connection or request hands it and the rest of the
//!   batch to SMTP ([`PostError::Failed`]).
//! - A peer without the path (no HTTPS at all, `404`, `405`, `501`) is
//!   remembered for [`UNSUPPORTED_FOR`] ([`Unsupported`]), and SMTP is used
//!   straight away until then.
//! - The certificate is checked as `mail.delivery.tls` says for the SMTP
//!   peers, for the domain's name; under an `enforce` MTA-STS policy it
//!   must verify whatever that setting is.
//! - One connection ([`Session`]) carries a batch's messages, one request
//!   after the other; connecting and each request run within
//!   [`POST_TIMEOUT`]; the answer's body is read up to [`MAX_ANSWER`]
//!   bytes, for the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use tokio::task::JoinHandle;

use super::https::{self, HttpsError};
use crate::log_safe::Escaped;

/// The path on the peer.
pub const PATH: &str = "/mxdeliv";
/// The header naming the envelope sender (empty for a bounce).
pub const MAIL_FROM: &str = "x-mail-from";
/// The header naming one recipient (repeated for each).
pub const MAIL_TO: &str = "x-mail-to";
/// Connecting (TCP and TLS), and then each request (the body up, the
/// answer back).
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
    /// It answered, and did not take this message (the next message may
    /// still go on the same connection).
    #[error("HTTPS delivery refused: {0}")]
    Refused(String),
    /// The connection or the request failed, or timed out.
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
        _ => Err(PostError::Refused(format!(
            "{url} answered {status}: {text}"
        ))),
    }
}

/// One HTTPS connection to a peer's `/mxdeliv`, kept for the messages of
/// a batch (as SMTP keeps its connection); its driver stops with it.
pub struct Session {
    domain: String,
    url: String,
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("url", &self.url).finish()
    }
}

impl Session {
    /// Connect to `domain`'s relay on `port` (`mail.delivery.https_port`),
    /// within [`POST_TIMEOUT`]. Nothing listening or no address is
    /// [`PostError::Unsupported`].
    pub async fn open(
        resolver: &hickory_resolver::TokioResolver,
        tls: &tokio_rustls::TlsConnector,
        domain: &str,
        port: u16,
    ) -> Result<Session, PostError> {
        let url = format!("https://{domain}{PATH}");
        let connected = async {
            let addrs = https::resolve(resolver, domain, port).await?;
            https::connect::<Full<Bytes>>(&addrs, tls, domain).await
        };
        match tokio::time::timeout(POST_TIMEOUT, connected).await {
            Ok(Ok((sender, driver))) => Ok(Session {
                domain: domain.to_owned(),
                url,
                sender,
                driver,
            }),
            Ok(Err(e @ (HttpsError::Connect(..) | HttpsError::Dns(..)))) => {
                Err(PostError::Unsupported(e.to_string()))
            }
            Ok(Err(e)) => Err(PostError::Failed(e.to_string())),
            Err(_) => Err(PostError::Failed(format!("{url}: connecting timed out"))),
        }
    }

    /// False once the peer has closed the connection (its keep-alive
    /// ended): open a new one.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Post one message from `from` to `rcpts` (all of this domain),
    /// within [`POST_TIMEOUT`].
    pub async fn post(
        &mut self,
        from: &str,
        rcpts: &[String],
        msg: Bytes,
    ) -> Result<(), PostError> {
        let url = self.url.clone();
        match tokio::time::timeout(POST_TIMEOUT, self.post_inner(from, rcpts, msg)).await {
            Ok(r) => r,
            Err(_) => Err(PostError::Failed(format!("{url}: timed out"))),
        }
    }

    async fn post_inner(
        &mut self,
        from: &str,
        rcpts: &[String],
        msg: Bytes,
    ) -> Result<(), PostError> {
        let url = &self.url;
        let failed = |e: &dyn std::fmt::Display| PostError::Failed(format!("{url}: {e}"));
        let mut req = hyper::Request::post(PATH)
            .header(hyper::header::HOST, self.domain.as_str())
            .header(hyper::header::USER_AGENT, "frontdoor mxdeliv")
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .header(MAIL_FROM, from);
        for r in rcpts {
            req = req.header(MAIL_TO, r.as_str());
        }
        let req = req.body(Full::new(msg)).map_err(|e| failed(&e))?;
        self.sender.ready().await.map_err(|e| failed(&e))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| failed(&e))?;
        let status = resp.status();
        // Read whole (up to the bound) so that the connection can serve
        // the next message; a longer answer ends the connection.
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        classify(status, &body, url)
    }
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
                Err(PostError::Refused(_))
            ));
        }
        // The peer's words reach the log escaped.
        let Err(PostError::Refused(t)) = classify(StatusCode::FORBIDDEN, b"bad\x1b[31m", u) else {
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
