//! An in-memory reader that hands its bytes out in pieces of varying size,
//! answering `Pending` (and waking at once) between pieces, as a socket
//! does: for the targets whose parsers read from an `AsyncRead`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

pub struct Chunked<'a> {
    pub data: &'a [u8],
    seed: u32,
    pending: bool,
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8], seed: u32) -> Self {
        Chunked {
            data,
            seed: seed | 1,
            pending: false,
        }
    }

    fn next(&mut self) -> u32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.next();
        if r % 3 == 0 && !self.pending {
            self.pending = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending = false;
        // Mostly small pieces, sometimes everything at once.
        let want = if r % 7 == 0 {
            usize::MAX
        } else {
            1 + (r as usize >> 8) % 24
        };
        let k = want.min(buf.remaining()).min(self.data.len());
        buf.put_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Poll::Ready(Ok(()))
    }
}
