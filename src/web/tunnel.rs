//! Relaying an upgraded request (a WebSocket, iroh's relay protocol)
//! between client and backend: both directions are copied, half-closes
//! passed on, until both ends are done, one fails, no byte moves for the
//! idle timeout, or the stop signal fires.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// How a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// Both sides closed.
    Done { up: u64, down: u64 },
    /// No byte moved for the idle timeout.
    Idle,
    /// The stop signal fired (shutdown).
    Stopped,
    /// A side failed.
    Failed(std::io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done { up, down } => write!(f, "done ({up} bytes up, {down} down)"),
            End::Idle => f.write_str("idle timeout"),
            End::Stopped => f.write_str("shutdown: drain grace period over"),
            End::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A stream that notes, in milliseconds since `start`, when it last read
/// a byte.
struct Noting<S> {
    inner: S,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Noting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copy between `client` and `backend` until the tunnel ends.
pub async fn run<C, B>(client: C, backend: B, idle: Duration, stop: CancellationToken) -> End
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut c = Noting {
        inner: client,
        start,
        last: last.clone(),
    };
    let mut b = Noting {
        inner: backend,
        start,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut c, &mut b);
    tokio::pin!(copy);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(start + since + idle);
        tokio::select! {
            r = &mut copy => {
                return match r {
                    Ok((up, down)) => End::Done { up, down },
                    Err(e) => End::Failed(e),
                };
            }
            _ = tokio::time::sleep_until(deadline) => {
                let quiet = start.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    return End::Idle;
                }
            }
            _ = stop.cancelled() => return End::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_ends_when_idle() {
        let (mut a, a2) = tokio::io::duplex(64);
        let (b2, mut b) = tokio::io::duplex(64);
        let t = tokio::spawn(run(
            a2,
            b2,
            Duration::from_millis(200),
            CancellationToken::new(),
        ));
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        let end = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(end, End::Idle), "{end}");
    }

    #[tokio::test]
    async fn stop_ends_it() {
        let (_a, a2) = tokio::io::duplex(64);
        let (b2, _b) = tokio::io::duplex(64);
        let stop = CancellationToken::new();
        let t = tokio::spawn(run(a2, b2, Duration::from_secs(60), stop.clone()));
        stop.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(end, End::Stopped), "{end}");
    }
}
