//! Relay bytes both ways between client and backend.
//!
//! Half-close aware (EOF on one side shuts down the other side's write half,
//! which for TLS sends close_notify), back-pressured (a direction stops
//! reading while its write side is blocked), with an idle deadline and an
//! external stop signal.
//!
//! Memory: a direction reads into a stack buffer inside `poll` and writes
//! straight through; only bytes the other side could not take yet are moved
//! to a heap buffer, which is freed as soon as it drains. An idle connection
//! therefore holds no relay buffer at all.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Read chunk size: four full TLS records of plaintext, plus room for the
/// records a TLS read completes (`tls_stream`: a partial record kept from
/// the last read, then 64 KiB), so that one read of the client's
/// ciphertext is one write to the backend, never split over two. One read from the
/// backend then becomes one `writev` of four records to the client, and one
/// read from the client hands the backend every record already decrypted;
/// against 16 KiB this cut the relay's CPU per GiB (docs/performance.md).
/// The chunk lives on the stack for the duration of one `poll`, so it costs
/// an idle connection nothing.
pub const CHUNK: usize = 64 * 1024 + super::record13::MAX_RECORD;

/// Why the relay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their write halves.
    Done,
    /// No byte moved for the idle timeout.
    Idle,
    /// The stop future fired (shutdown, key revoked); it says why.
    Stopped(&'static str),
    ClientError(String),
    BackendError(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Done => f.write_str("closed"),
            End::Idle => f.write_str("idle timeout"),
            End::Stopped(why) => f.write_str(why),
            End::ClientError(e) => write!(f, "client error: {e}"),
            End::BackendError(e) => write!(f, "backend error: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Client → backend bytes.
    pub up: u64,
    /// Backend → client bytes.
    pub down: u64,
    pub end: End,
}

#[derive(Default)]
struct Dir {
    pending: Vec<u8>,
    off: usize,
    read_eof: bool,
    shut: bool,
    need_flush: bool,
    bytes: u64,
}

/// Which side of a direction failed.
pub enum Fail {
    Read(io::Error),
    Write(io::Error),
}

/// A client stream that moves bytes to or from the backend itself, without
/// the relay's buffer in between (`tls_stream`: TLS records opened where
/// they were read and written out with one `writev`; plaintext read with
/// one `readv` into the records that will carry it). `None`: it cannot (for
/// now), and the relay reads and writes as usual.
pub trait Pump<B: ?Sized> {
    fn poll_pump_to(
        &mut self,
        _cx: &mut Context<'_>,
        _dst: &mut B,
    ) -> Option<Poll<Result<Moved, Fail>>> {
        None
    }
    fn poll_pump_from(
        &mut self,
        _cx: &mut Context<'_>,
        _src: &mut B,
    ) -> Option<Poll<Result<Moved, Fail>>> {
        None
    }
}

/// What one pump step did.
pub enum Moved {
    /// These many bytes reached the other side (0: all of them were kept
    /// for later, the other side being full).
    Bytes(usize),
    /// The reading side ended, and everything before was written.
    Eof,
}

impl<B: ?Sized> Pump<B> for tokio::net::TcpStream {}
impl<B: ?Sized> Pump<B> for tokio::io::DuplexStream {}

/// EOF without close_notify is how many clients end a session; count it as
/// EOF. A reset is not: the peer is gone both ways, so the relay ends.
fn eof_like(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

/// Shutting down a write half the peer already closed is not a failure.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Dir {
    fn done(&self) -> bool {
        self.shut
    }

    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        moved: &mut bool,
        mut pump: impl FnMut(
            &mut Context<'_>,
            Pin<&mut R>,
            Pin<&mut W>,
        ) -> Option<Poll<Result<Moved, Fail>>>,
    ) -> Poll<Result<(), Fail>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        // Yield after this many chunks so one busy direction cannot starve
        // the other direction or other connections on this worker.
        let mut budget = 64;
        loop {
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.off < self.pending.len() {
                match w.as_mut().poll_write(cx, &self.pending[self.off..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fail::Write(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.off += n;
                        self.need_flush = true;
                        *moved = true;
                        if self.off == self.pending.len() {
                            self.pending = Vec::new();
                            self.off = 0;
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.read_eof {
                if !self.shut {
                    ready!(w.as_mut().poll_shutdown(cx)).or_else(|e| {
                        if gone(&e) {
                            Ok(())
                        } else {
                            Err(Fail::Write(e))
                        }
                    })?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            if self.off == self.pending.len() {
                if let Some(p) = pump(cx, r.as_mut(), w.as_mut()) {
                    match p {
                        Poll::Pending => {
                            if self.need_flush {
                                match w.as_mut().poll_flush(cx) {
                                    Poll::Ready(Ok(())) => self.need_flush = false,
                                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                                    Poll::Pending => {}
                                }
                            }
                            return Poll::Pending;
                        }
                        Poll::Ready(Ok(Moved::Eof)) => self.read_eof = true,
                        Poll::Ready(Ok(Moved::Bytes(n))) => {
                            self.bytes += n as u64;
                            self.need_flush = true;
                            *moved = true;
                        }
                        Poll::Ready(Err(Fail::Read(e))) if eof_like(&e) => self.read_eof = true,
                        Poll::Ready(Err(f)) => return Poll::Ready(Err(f)),
                    }
                    continue;
                }
            }
            // Left uninitialised: zeroing 64 KiB per read showed up in
            // profiles, and `ReadBuf` tracks which bytes the reader filled.
            let mut stack = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut rb = ReadBuf::uninit(&mut stack);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
                    if self.need_flush {
                        match w.as_mut().poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.need_flush = false,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                            Poll::Pending => {}
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) if eof_like(&e) => self.read_eof = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Read(e))),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        self.read_eof = true;
                        continue;
                    }
                    self.bytes += n as u64;
                    *moved = true;
                    let data = rb.filled();
                    let mut off = 0;
                    while off < n {
                        match w.as_mut().poll_write(cx, &data[off..]) {
                            Poll::Ready(Ok(0)) => {
                                return Poll::Ready(Err(Fail::Write(
                                    io::ErrorKind::WriteZero.into(),
                                )))
                            }
                            Poll::Ready(Ok(k)) => {
                                off += k;
                                self.need_flush = true;
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                            Poll::Pending => {
                                self.pending = data[off..].to_vec();
                                self.off = 0;
                                return Poll::Pending;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Relay until both directions finish, the idle timeout passes, an error
/// occurs, or `stop` completes.
pub async fn relay<C, B, S>(client: &mut C, backend: &mut B, idle: Duration, stop: S) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Pump<B> + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: Future<Output = &'static str>,
{
    relay_draining(client, backend, idle, stop, std::future::pending()).await
}

/// How long a connection must have been quiet (no byte either way) before
/// the drain closes it: a command and its answer in flight are not cut.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// [`relay`], and once `turn` resolves (this connection's moment in a
/// drain, [`super::drain`]) the relay ends as soon as no byte has moved
/// for [`DRAIN_QUIET`]: an idle IMAP session closes at its moment, one in
/// the middle of an exchange when the exchange is over. A connection whose
/// backend has not sent a byte yet is left to finish (or to the grace).
pub async fn relay_draining<C, B, S, D>(
    client: &mut C,
    backend: &mut B,
    idle: Duration,
    stop: S,
    turn: D,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Pump<B> + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: Future<Output = &'static str>,
    D: Future<Output = ()>,
{
    let mut turn = std::pin::pin!(turn);
    let mut turned = false;
    let mut quiet: Option<Pin<Box<Sleep>>> = None;
    let mut up = Dir::default();
    let mut down = Dir::default();
    let mut last = Instant::now();
    let sleep: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(idle));
    let mut sleep = sleep;
    let mut stop = std::pin::pin!(stop);
    let end = std::future::poll_fn(|cx| {
        if let Poll::Ready(why) = stop.as_mut().poll(cx) {
            return Poll::Ready(End::Stopped(why));
        }
        let mut moved = false;
        if !up.done() {
            match up.poll(
                cx,
                Pin::new(&mut *client),
                Pin::new(&mut *backend),
                &mut moved,
                |cx, c, b| c.get_mut().poll_pump_to(cx, b.get_mut()),
            ) {
                Poll::Ready(Err(Fail::Read(e))) => {
                    return Poll::Ready(End::ClientError(e.to_string()))
                }
                Poll::Ready(Err(Fail::Write(e))) => {
                    return Poll::Ready(End::BackendError(e.to_string()))
                }
                _ => {}
            }
        }
        if !down.done() {
            match down.poll(
                cx,
                Pin::new(&mut *backend),
                Pin::new(&mut *client),
                &mut moved,
                |cx, b, c| c.get_mut().poll_pump_from(cx, b.get_mut()),
            ) {
                Poll::Ready(Err(Fail::Read(e))) => {
                    return Poll::Ready(End::BackendError(e.to_string()))
                }
                Poll::Ready(Err(Fail::Write(e))) => {
                    return Poll::Ready(End::ClientError(e.to_string()))
                }
                _ => {}
            }
        }
        if up.done() && down.done() {
            return Poll::Ready(End::Done);
        }
        if moved {
            last = Instant::now();
        }
        // The timer is only re-armed when it fires, not on every byte.
        while sleep.as_mut().poll(cx).is_ready() {
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return Poll::Ready(End::Idle);
            }
            sleep.as_mut().reset(deadline);
        }
        if !turned && turn.as_mut().poll(cx).is_ready() {
            turned = true;
        }
        // Only a session the backend has spoken in: one still waiting for
        // its greeting (a successor's server about to take it) is not idle.
        if turned && down.bytes > 0 {
            let due = last + DRAIN_QUIET;
            if Instant::now() >= due {
                return Poll::Ready(End::Stopped("shutdown: closed in the drain"));
            }
            let q = quiet.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            q.as_mut().reset(due);
            if q.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Stopped("shutdown: closed in the drain"));
            }
        }
        Poll::Pending
    })
    .await;
    Outcome {
        up: up.bytes,
        down: down.bytes,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relays_both_ways_and_half_closes() {
        let (mut c_out, mut c_in) = tokio::io::duplex(1024);
        let (mut b_in, mut b_out) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            relay(
                &mut c_in,
                &mut b_in,
                Duration::from_secs(5),
                std::future::pending(),
            )
            .await
        });
        let big = vec![7u8; 100_000];
        let big2 = big.clone();
        let writer = tokio::spawn(async move {
            c_out.write_all(&big2).await.unwrap();
            c_out.shutdown().await.unwrap();
            let mut back = Vec::new();
            c_out.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        b_out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        b_out.write_all(b"bye").await.unwrap();
        b_out.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"bye");
        let o = task.await.unwrap();
        assert_eq!((o.up, o.down, o.end), (100_000, 3, End::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_a_quiet_moment() {
        let (mut c_out, mut c_in) = tokio::io::duplex(64);
        let (mut b_in, mut b_out) = tokio::io::duplex(64);
        let (turn_tx, turn_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let turn = async {
                let _ = turn_rx.await;
            };
            relay_draining(
                &mut c_in,
                &mut b_in,
                Duration::from_secs(3600),
                std::future::pending(),
                turn,
            )
            .await
        });
        let t0 = Instant::now();
        turn_tx.send(()).unwrap();
        // Busy for 5 s (a byte each 200 ms): not closed while it talks.
        let mut b = [0u8; 1];
        for _ in 0..25 {
            c_out.write_all(b"x").await.unwrap();
            b_out.read_exact(&mut b).await.unwrap();
            b_out.write_all(b"y").await.unwrap();
            c_out.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!task.is_finished(), "closed while busy");
        }
        let o = task.await.unwrap();
        assert_eq!(o.end, End::Stopped("shutdown: closed in the drain"));
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(5800) && waited < Duration::from_millis(6100),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_only_after_silence() {
        let (mut c_out, mut c_in) = tokio::io::duplex(64);
        let (mut b_in, _b_out) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            relay(
                &mut c_in,
                &mut b_in,
                Duration::from_secs(10),
                std::future::pending(),
            )
            .await
        });
        tokio::time::sleep(Duration::from_secs(6)).await;
        c_out.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!task.is_finished(), "activity must push the deadline");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let o = task.await.unwrap();
        assert_eq!(o.end, End::Idle);
        assert_eq!(o.up, 1);
    }
}
