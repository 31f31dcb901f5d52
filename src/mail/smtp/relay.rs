//! A minimal SMTP client for handing remote mail to the smarthost
//! (`mail.relay`): EHLO, MAIL, RCPT…, DATA, QUIT over plain TCP on a trusted
//! network. Every step has a deadline; any non-2xx/3xx reply fails the whole
//! hand-over (temporary or permanent as the smarthost said), so the sender
//! gets the truth before its `250`. Replies are read by the one SMTP reply
//! client, [`crate::smtp_reply`].

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::mail::message::dot_stuff;
use crate::smtp_reply::read_reply;

/// Deadline for each step of the conversation.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Try again later (4xx, connection trouble).
    #[error("smarthost temporarily failed: {0}")]
    Temporary(String),
    /// The smarthost refused for good (5xx).
    #[error("smarthost refused: {0}")]
    Permanent(String),
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn reply(&mut self) -> Result<(u16, String), RelayError> {
        let reply = tokio::time::timeout(STEP_TIMEOUT, read_reply(&mut self.s, &mut self.buf))
            .await
            .map_err(|_| RelayError::Temporary("timeout".into()))?
            .map_err(|e| RelayError::Temporary(e.to_string()))?;
        Ok((reply.code, reply.lines.join(" ")))
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), RelayError> {
        tokio::time::timeout(STEP_TIMEOUT, self.s.write_all(data))
            .await
            .map_err(|_| RelayError::Temporary("timeout".into()))?
            .map_err(|e| RelayError::Temporary(e.to_string()))
    }

    async fn expect(&mut self, what: &str, ok: impl Fn(u16) -> bool) -> Result<(), RelayError> {
        let (code, text) = self.reply().await?;
        if ok(code) {
            Ok(())
        } else if code >= 500 {
            Err(RelayError::Permanent(format!("{what}: {code} {text}")))
        } else {
            Err(RelayError::Temporary(format!("{what}: {code} {text}")))
        }
    }
}

/// Hand `msg` from `from` to `rcpts` to the smarthost at `addr` (`host:port`).
pub async fn send(
    addr: &str,
    helo: &str,
    from: &str,
    rcpts: &[String],
    msg: &[u8],
) -> Result<(), RelayError> {
    let s = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| RelayError::Temporary(format!("connect to {addr}: timeout")))?
        .map_err(|e| RelayError::Temporary(format!("connect to {addr}: {e}")))?;
    let mut c = Conn { s, buf: Vec::new() };
    let two = |c: u16| (200..300).contains(&c);
    c.expect("greeting", two).await?;
    c.send(format!("EHLO {helo}\r\n").as_bytes()).await?;
    c.expect("EHLO", two).await?;
    let utf8 = !from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
    let param = if utf8 { " SMTPUTF8" } else { "" };
    c.send(format!("MAIL FROM:<{from}>{param}\r\n").as_bytes())
        .await?;
    c.expect("MAIL", two).await?;
    for r in rcpts {
        c.send(format!("RCPT TO:<{r}>\r\n").as_bytes()).await?;
        c.expect("RCPT", two).await?;
    }
    c.send(b"DATA\r\n").await?;
    c.expect("DATA", |x| x == 354).await?;
    c.send(&dot_stuff(msg)).await?;
    c.expect("end of data", two).await?;
    let _ = c.send(b"QUIT\r\n").await;
    Ok(())
}
