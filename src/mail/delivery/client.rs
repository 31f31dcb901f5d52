//! The SMTP client of the delivery worker (RFC 5321): one connection to a
//! peer's MX, STARTTLS (RFC 3207) required when the worker says so, then
//! any number of transactions on it (connection reuse per destination),
//! each with a result per recipient. Replies are read by the one reply
//! parser, [`crate::smtp_reply`]; every step has a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mail::message::dot_stuff;
use crate::smtp_reply::{read_reply, Reply};

/// Deadline for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for the greeting, EHLO, STARTTLS and the TLS handshake, each.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for the reply after the message's final dot (RFC 5321
/// §4.5.3.2.6 asks for 10 minutes).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a connection or a transaction failed as a whole.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The network, a timeout, a 4xx at connection level, no STARTTLS when
    /// required, a TLS failure: try later (maybe another MX host).
    #[error("{0}")]
    Temporary(String),
    /// A 5xx for the whole transaction (MAIL FROM refused, 554 greeting).
    #[error("{0}")]
    Permanent(String),
    /// The TLS handshake after STARTTLS failed (among others: the
    /// certificate did not verify): temporary, like [`Self::Temporary`].
    #[error("{0}")]
    Tls(String),
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer took responsibility for it (`250` after the data).
    Delivered(String),
    /// 4xx: try again later.
    Temporary(String),
    /// 5xx: refused for good.
    Permanent(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open connection to a peer, after EHLO (and STARTTLS).
pub struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    /// The host name the connection was made for (the MX name).
    pub host: String,
    /// True when the session runs inside TLS.
    pub tls: bool,
    smtputf8: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("host", &self.host)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn temp(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Temporary(format!("{what}: {e}"))
}

/// Printable ASCII, at most 300 bytes: peer text goes into logs and DSNs.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}

impl Conn {
    async fn reply_within(&mut self, d: Duration, what: &str) -> Result<Reply, ClientError> {
        tokio::time::timeout(d, read_reply(&mut self.io, &mut self.buf))
            .await
            .map_err(|_| temp(what, "timeout"))?
            .map_err(|e| temp(what, e))
    }

    async fn reply(&mut self, what: &str) -> Result<Reply, ClientError> {
        self.reply_within(STEP_TIMEOUT, what).await
    }

    async fn send(&mut self, data: &[u8], what: &str) -> Result<(), ClientError> {
        tokio::time::timeout(STEP_TIMEOUT, async {
            self.io.write_all(data).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| temp(what, "timeout"))?
        .map_err(|e| temp(what, e))
    }

    async fn command(&mut self, line: &str, what: &str) -> Result<Reply, ClientError> {
        self.send(format!("{line}\r\n").as_bytes(), what).await?;
        self.reply(what).await
    }

    async fn ehlo(&mut self, helo: &str) -> Result<Reply, ClientError> {
        let r = self.command(&format!("EHLO {helo}"), "EHLO").await?;
        if (200..300).contains(&r.code) {
            self.smtputf8 = r.lines.iter().any(|l| l.eq_ignore_ascii_case("SMTPUTF8"));
            Ok(r)
        } else {
            Err(ClientError::Temporary(format!(
                "EHLO: {}",
                clean(&r.text())
            )))
        }
    }

    /// Connect to `addr` (the MX host `host`), read the greeting, EHLO as
    /// `helo`; with `tls`, STARTTLS must be offered and succeed (verified
    /// as the connector says, for the name `host`), then EHLO again.
    pub async fn open(
        addr: SocketAddr,
        host: &str,
        helo: &str,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Conn, ClientError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| temp(&format!("connect to {host} [{addr}]"), "timeout"))?
            .map_err(|e| temp(&format!("connect to {host} [{addr}]"), e))?;
        let _ = tcp.set_nodelay(true);
        let mut c = Conn {
            io: Box::new(tcp),
            buf: Vec::new(),
            host: host.to_owned(),
            tls: false,
            smtputf8: false,
        };
        let g = c.reply("greeting").await?;
        if g.code != 220 {
            return Err(ClientError::Temporary(format!(
                "greeting from {host}: {}",
                clean(&g.text())
            )));
        }
        let ehlo = c.ehlo(helo).await?;
        let Some(connector) = tls else {
            return Ok(c);
        };
        if !ehlo
            .lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(ClientError::Temporary(format!(
                "{host} does not offer STARTTLS, which delivery requires"
            )));
        }
        let r = c.command("STARTTLS", "STARTTLS").await?;
        if r.code != 220 {
            return Err(ClientError::Temporary(format!(
                "STARTTLS at {host}: {}",
                clean(&r.text())
            )));
        }
        if !c.buf.is_empty() {
            // Bytes after the 220 came before TLS: an injection attempt.
            return Err(ClientError::Temporary(format!(
                "{host} sent data after its STARTTLS reply"
            )));
        }
        let name = rustls::pki_types::ServerName::try_from(host.trim_end_matches('.').to_owned())
            .map_err(|e| temp(&format!("TLS name {host}"), e))?;
        let Conn { io, .. } = c;
        let stream = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, io))
            .await
            .map_err(|_| temp(&format!("TLS with {host}"), "timeout"))?
            .map_err(|e| ClientError::Tls(format!("TLS with {host}: {e}")))?;
        let mut c = Conn {
            io: Box::new(stream),
            buf: Vec::new(),
            host: host.to_owned(),
            tls: true,
            smtputf8: false,
        };
        c.ehlo(helo).await?;
        Ok(c)
    }

    /// One transaction: `from` to `rcpts`, `msg` (not yet dot-stuffed).
    /// `Ok` holds one outcome per recipient, in order; `Err` means the
    /// connection is no longer usable (every recipient is then the error's
    /// kind).
    pub async fn send_message(
        &mut self,
        from: &str,
        rcpts: &[String],
        msg: &[u8],
    ) -> Result<Vec<Outcome>, ClientError> {
        let utf8 = !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
        if utf8 && !self.smtputf8 {
            let why = format!(
                "{} does not offer SMTPUTF8, needed for these addresses",
                self.host
            );
            return Ok(rcpts
                .iter()
                .map(|_| Outcome::Permanent(why.clone()))
                .collect());
        }
        let param = if utf8 { " SMTPUTF8" } else { "" };
        let mail = self
            .command(&format!("MAIL FROM:<{from}>{param}"), "MAIL")
            .await?;
        if !(200..300).contains(&mail.code) {
            let text = format!("MAIL FROM: {}", clean(&mail.text()));
            let _ = self.command("RSET", "RSET").await;
            let out = if mail.code >= 500 {
                Outcome::Permanent(text)
            } else {
                Outcome::Temporary(text)
            };
            return Ok(rcpts.iter().map(|_| out.clone()).collect());
        }
        let mut out: Vec<Option<Outcome>> = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            let rep = self.command(&format!("RCPT TO:<{r}>"), "RCPT").await?;
            let text = clean(&rep.text());
            out.push(match rep.code {
                200..=299 => None,
                500.. => Some(Outcome::Permanent(format!("RCPT TO: {text}"))),
                _ => Some(Outcome::Temporary(format!("RCPT TO: {text}"))),
            });
        }
        if out.iter().all(Option::is_some) {
            let _ = self.command("RSET", "RSET").await;
            return Ok(out.into_iter().flatten().collect());
        }
        let data = self.command("DATA", "DATA").await?;
        if data.code != 354 {
            let text = format!("DATA: {}", clean(&data.text()));
            let _ = self.command("RSET", "RSET").await;
            let fail = if data.code >= 500 {
                Outcome::Permanent(text)
            } else {
                Outcome::Temporary(text)
            };
            return Ok(out.into_iter().map(|o| o.unwrap_or(fail.clone())).collect());
        }
        let stuffed = dot_stuff(msg);
        tokio::time::timeout(DATA_TIMEOUT, async {
            self.io.write_all(&stuffed).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| temp("message data", "timeout"))?
        .map_err(|e| temp("message data", e))?;
        drop(stuffed);
        let end = self.reply_within(DATA_TIMEOUT, "end of data").await?;
        let text = clean(&end.text());
        let done = match end.code {
            200..=299 => Outcome::Delivered(text),
            500.. => Outcome::Permanent(format!("end of data: {text}")),
            _ => Outcome::Temporary(format!("end of data: {text}")),
        };
        Ok(out.into_iter().map(|o| o.unwrap_or(done.clone())).collect())
    }

    /// Say goodbye (best effort).
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.io.write_all(b"QUIT\r\n").await;
            let _ = read_reply(&mut self.io, &mut self.buf).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

/// The TLS client configuration for deliveries: verified against the
/// system's roots plus `ca_file`, or (`encrypt`) any certificate.
pub fn tls_connector(
    verify: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsConnector, String> {
    let cfg = client_config(verify, ca_file)?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// The client configuration behind [`tls_connector`] (also the MTA-STS
/// policy fetch's, with its ALPN added).
pub fn client_config(
    verify: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let cfg = if verify {
        builder
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::any_cert::AnyCert(provider)))
            .with_no_client_auth()
    };
    Ok(cfg)
}

/// The system's roots plus the certificates of `ca_file`.
fn roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!("delivery TLS: reading the system's certificates: {e}");
    }
    let (added, _) = roots.add_parsable_certificates(native.certs);
    let mut extra = 0;
    if let Some(p) = ca_file {
        let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            let c = c.map_err(|e| format!("{}: {e}", p.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
            extra += 1;
        }
        if extra == 0 {
            return Err(format!("{}: no certificate in it", p.display()));
        }
    }
    tracing::debug!(system = added, extra, "delivery TLS trust anchors");
    Ok(roots)
}

/// The web PKI verifier of [`client_config`]'s verifying mode.
pub fn web_pki_verifier(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider)
        .build()
        .map_err(|e| e.to_string())
}

/// A connector that takes any certificate but records whether `verifier`
/// would have refused it (an MTA-STS `testing` policy under `encrypt`).
pub fn reporting_connector(
    verifier: &Arc<rustls::client::WebPkiServerVerifier>,
) -> Result<(tokio_rustls::TlsConnector, Arc<super::any_cert::Reporting>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let reporting = Arc::new(super::any_cert::Reporting::new(verifier.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(reporting.clone())
        .with_no_client_auth();
    Ok((tokio_rustls::TlsConnector::from(Arc::new(cfg)), reporting))
}
