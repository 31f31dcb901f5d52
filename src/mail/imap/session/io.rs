//! Bytes to and from the client: reads with a deadline (small while idle),
//! writes of the pending output, and buffers freed once empty so an idle
//! session holds only a few hundred bytes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ImapError, Session, BUSY_READ, IDLE_READ, KEEP_BUFFER};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Read more client bytes into `buf` within `timeout`.
    pub(super) async fn read_more(&mut self, timeout: Duration) -> Result<(), ImapError> {
        let want = if self.buf.is_empty() {
            IDLE_READ
        } else {
            BUSY_READ
        };
        self.buf.reserve(want);
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ImapError::Timeout(timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Err(ImapError::Eof),
            Ok(Ok(_)) => Ok(()),
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), ImapError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        Ok(())
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
    }
}
