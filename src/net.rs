//! A byte stream over TCP or a Unix socket: backends of the front door and
//! connections accepted by the bundled mail servers are either.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
}

impl Stream {
    /// `readv`: fill `bufs` in order from one read (the front door reads a
    /// backend's plaintext straight into the slots of TLS records).
    pub fn poll_read_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        // Bounded: a WouldBlock clears the readiness, so the next
        // `poll_read_ready` returns Pending until the socket is readable.
        // A short read (less than `bufs` holds) drained the socket too:
        // its readiness is cleared as well, as tokio's own `poll_read`
        // does, so the next poll waits for the next event instead of
        // paying a `readv` that fails with EAGAIN.
        let cap: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            let mut short = 0;
            let r = match self {
                Stream::Tcp(s) => {
                    std::task::ready!(s.poll_read_ready(cx))?;
                    s.try_io(tokio::io::Interest::READABLE, || {
                        drained(s.try_read_vectored(&mut *bufs), cap, &mut short)
                    })
                }
                Stream::Unix(s) => {
                    std::task::ready!(s.poll_read_ready(cx))?;
                    s.try_io(tokio::io::Interest::READABLE, || {
                        drained(s.try_read_vectored(&mut *bufs), cap, &mut short)
                    })
                }
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => {
                    return Poll::Ready(Ok(short))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

/// A read of `n` bytes, 0 < n < `cap`, emptied the socket: it is reported
/// as `WouldBlock`, which makes `try_io` clear the readiness it saw before
/// the read (a later event is not lost), and `n` is kept in `short`.
fn drained(r: io::Result<usize>, cap: usize, short: &mut usize) -> io::Result<usize> {
    match r {
        Ok(n) if n > 0 && n < cap => {
            *short = n;
            Err(io::ErrorKind::WouldBlock.into())
        }
        r => r,
    }
}
