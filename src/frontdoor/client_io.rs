//! The byte stream a client connection's TLS runs over: the accepted TCP
//! socket, or the plaintext of an outer TLS connection that opened an HTTP
//! `CONNECT` tunnel (`connect`). The connection pipeline (`conn`) takes
//! either, so a tunnelled connection gets the same handshake, routing,
//! limits and logs as one that arrived on the listener directly.
//!
//! Invariant: a tunnel's outer stream is itself carried by TCP — `conn`
//! refuses a tunnel inside a tunnel, so the nesting is at most one deep.
//! The outer stream's byte counters are shared with the outer connection's
//! close line.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tls_stream::{TlsStream, Transport};

/// What a client's TLS runs over.
pub enum ClientIo {
    Tcp(TcpStream),
    /// Inside a CONNECT tunnel.
    Tunnel(Box<Tunnelled>),
}

/// The outer connection of a tunnel, with the bytes it carried.
pub struct Tunnelled {
    pub outer: TlsStream<ClientIo>,
    /// Client → server plaintext of the outer connection (the inner TLS records).
    pub up: Arc<AtomicU64>,
    pub down: Arc<AtomicU64>,
}

impl ClientIo {
    /// The TCP socket, when not tunnelled.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientIo::Tcp(t) => Some(t),
            ClientIo::Tunnel(_) => None,
        }
    }

    pub fn is_tunnel(&self) -> bool {
        matches!(self, ClientIo::Tunnel(_))
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            ClientIo::Tunnel(t) => {
                let before = buf.filled().len();
                let r = Pin::new(&mut t.outer).poll_read(cx, buf);
                let n = buf.filled().len() - before;
                t.up.fetch_add(n as u64, Ordering::Relaxed);
                r
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(t) => Pin::new(t).poll_write(cx, data),
            ClientIo::Tunnel(t) => {
                let r = Pin::new(&mut t.outer).poll_write(cx, data);
                if let Poll::Ready(Ok(n)) = &r {
                    t.down.fetch_add(*n as u64, Ordering::Relaxed);
                }
                r
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Tcp(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            ClientIo::Tunnel(t) => {
                let r = Pin::new(&mut t.outer).poll_write_vectored(cx, bufs);
                if let Poll::Ready(Ok(n)) = &r {
                    t.down.fetch_add(*n as u64, Ordering::Relaxed);
                }
                r
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Tcp(t) => t.is_write_vectored(),
            ClientIo::Tunnel(t) => t.outer.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(t) => Pin::new(t).poll_flush(cx),
            ClientIo::Tunnel(t) => Pin::new(&mut t.outer).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            ClientIo::Tunnel(t) => Pin::new(&mut t.outer).poll_shutdown(cx),
        }
    }
}

impl Transport for ClientIo {
    fn try_write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientIo::Tcp(t) => t.try_write(buf),
            ClientIo::Tunnel(t) => {
                let n = t.outer.try_write_now(buf)?;
                t.down.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
        }
    }
}
