//! Bytes to and from the client: reads with a deadline (small while idle),
//! writes of the pending output, and buffers freed once empty so an idle
//! session holds only a few hundred bytes (plus, under COMPRESS, the
//! inflater's window: `compress`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::compress::COMPRESSOR_REST;
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
        let mut left = timeout;
        if self.stream.compressed() && timeout > COMPRESSOR_REST {
            // A quiet client first costs its compressor (compress.rs).
            match tokio::time::timeout(COMPRESSOR_REST, self.stream.read_buf(&mut self.buf)).await {
                Ok(r) => return Self::read_result(r),
                Err(_) => {
                    self.stream.rest();
                    left = timeout - COMPRESSOR_REST;
                }
            }
        }
        match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ImapError::Timeout(timeout)),
            Ok(r) => Self::read_result(r),
        }
    }

    fn read_result(r: std::io::Result<usize>) -> Result<(), ImapError> {
        match r {
            Err(e) => Err(e.into()),
            Ok(0) => Err(ImapError::Eof),
            Ok(_) => Ok(()),
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), ImapError> {
        if !self.out.is_empty() {
            self.stream.write_flush(&self.out).await?;
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
