//! The relay's side of a TLS stream: [`Pump`] for [`TlsStream`], which moves
//! bytes between the client's TLS 1.3 records and the backend stream
//! without a buffer of the relay's own. Client→backend, records are opened
//! where they were read and their payloads written with one `writev`;
//! backend→client, the backend's plaintext is read with one `readv` into the
//! slots of the records that will carry it and sealed there. A stream whose
//! records `record13` does not hold (TLS 1.2) answers `None`, and the relay
//! copies through its `AsyncRead`/`AsyncWrite` instead.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncWrite, ReadBuf};

use super::{general, TlsStream, Transport, COALESCE, READ_CHUNK};
use crate::frontdoor::record13;
use crate::frontdoor::relay::{Fail, Moved, Pump};
use crate::net::Stream;

/// Full records the backend→client pump reads at once: `relay::CHUNK` of
/// plaintext.
const SLOTS: usize = 5;
/// Payloads the client→backend pump hands to one `writev`; a read holding
/// more (tiny records) has the rest copied behind them.
const MAX_SLICES: usize = 64;
thread_local! {
    /// Record slots for the backend→client pump, one per worker thread:
    /// the backend's plaintext is read into them and sealed where it lies.
    static SLOT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<T: Transport> TlsStream<T> {
    /// Client→backend: records opened where they were read, their payloads
    /// written with one `writev`; what the backend does not take is kept in
    /// `plain` and written first next time.
    fn pump_to(&mut self, cx: &mut Context<'_>, dst: &mut Stream) -> Poll<Result<Moved, Fail>> {
        if self.plain_off < self.plain.len() {
            let k = ready!(Pin::new(&mut *dst).poll_write(cx, &self.plain[self.plain_off..]))
                .map_err(Fail::Write)?;
            if k == 0 {
                return Poll::Ready(Err(Fail::Write(io::ErrorKind::WriteZero.into())));
            }
            self.consume_plain(k);
            return Poll::Ready(Ok(Moved::Bytes(k)));
        }
        loop {
            if self.peer_closed {
                return Poll::Ready(Ok(Moved::Eof));
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK + record13::MAX_RECORD];
            let kept = self.incoming.len().min(record13::MAX_RECORD);
            let mut rb = ReadBuf::uninit(&mut stack[..kept + READ_CHUNK]);
            rb.put_slice(&self.incoming[..kept]);
            ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut rb)).map_err(Fail::Read)?;
            if rb.filled().len() == kept {
                return Poll::Ready(Err(Fail::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                ))));
            }
            let TlsStream {
                own,
                incoming,
                plain,
                ..
            } = self;
            let Some(own) = own.as_mut() else {
                return Poll::Ready(Err(Fail::Read(general("TLS connection state lost"))));
            };
            let data = rb.filled_mut();
            let base = data.as_ptr() as usize;
            let len = data.len();
            let mut ranges = [(0usize, 0usize); MAX_SLICES];
            let mut nr = 0;
            let mut got = 0;
            let mut sink = |p: &[u8]| {
                got += p.len();
                let at = (p.as_ptr() as usize).wrapping_sub(base);
                if p.is_empty() {
                    // An empty record: nothing to write.
                } else if nr < MAX_SLICES && plain.is_empty() && at < len && p.len() <= len - at {
                    ranges[nr] = (at, p.len());
                    nr += 1;
                } else {
                    plain.extend_from_slice(p);
                }
            };
            let (used, r) = own.open(data, &mut sink);
            self.peer_closed = own.peer_closed();
            if let Err(f) = r {
                self.incoming = Vec::new();
                self.plain = Vec::new();
                self.send_own_alert(f.alert);
                return Poll::Ready(Err(Fail::Read(f.into_io())));
            }
            let left = &data[used.min(len)..];
            if left.is_empty() {
                *incoming = Vec::new();
            } else {
                incoming.clear();
                incoming.extend_from_slice(left);
            }
            // A KeyUpdate the client asked for waits for our next data
            // (`seal_due_key_update`), as in `poll_read`.
            if !self.outgoing.is_empty() {
                // What waits (tickets) goes out as far as the socket takes it.
                if let Poll::Ready(Err(e)) = self.poll_drain_out(cx) {
                    return Poll::Ready(Err(Fail::Read(e)));
                }
            }
            if got == 0 {
                continue;
            }
            let data = &*data;
            let mut slices: [IoSlice<'_>; MAX_SLICES] = [IoSlice::new(&[]); MAX_SLICES];
            for (s, &(at, n)) in slices.iter_mut().zip(&ranges[..nr]) {
                *s = IoSlice::new(&data[at..at + n]);
            }
            let mut bufs = &mut slices[..nr];
            while !bufs.is_empty() {
                match Pin::new(&mut *dst).poll_write_vectored(cx, bufs) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fail::Write(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(k)) => IoSlice::advance_slices(&mut bufs, k),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => {
                        // Kept, in order, ahead of what was already copied.
                        let mut rest = Vec::with_capacity(
                            bufs.iter().map(|b| b.len()).sum::<usize>() + self.plain.len(),
                        );
                        for b in bufs.iter() {
                            rest.extend_from_slice(b);
                        }
                        rest.extend_from_slice(&self.plain);
                        let kept = rest.len();
                        self.plain = rest;
                        self.plain_off = 0;
                        return Poll::Ready(Ok(Moved::Bytes(got - kept)));
                    }
                }
            }
            if !self.plain.is_empty() {
                // More payloads than one writev takes: the copied rest.
                match Pin::new(&mut *dst).poll_write(cx, &self.plain) {
                    Poll::Ready(Ok(k)) => self.plain_off = k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => {}
                }
                let kept = self.plain.len() - self.plain_off;
                if kept == 0 {
                    self.plain = Vec::new();
                    self.plain_off = 0;
                }
                return Poll::Ready(Ok(Moved::Bytes(got - kept)));
            }
            return Poll::Ready(Ok(Moved::Bytes(got)));
        }
    }

    /// Backend→client: the backend's plaintext read with one `readv` into
    /// record slots, sealed where it lies, written with one `write`; what
    /// the socket does not take is kept in `outgoing` and written first.
    fn pump_from(&mut self, cx: &mut Context<'_>, src: &mut Stream) -> Poll<Result<Moved, Fail>> {
        // A little left over (session tickets) goes out with these records;
        // more is back-pressure: wait until the socket takes it.
        if self.outgoing.len() - self.out_off > COALESCE {
            ready!(self.poll_drain_out(cx)).map_err(Fail::Write)?;
        }
        if self.close_sent {
            return Poll::Ready(Err(Fail::Write(io::ErrorKind::BrokenPipe.into())));
        }
        SLOT_BUF.with(|cell| {
            let Ok(mut slots) = cell.try_borrow_mut() else {
                return Poll::Ready(Err(Fail::Write(general("record slots in use"))));
            };
            let need = SLOTS * record13::SLOT;
            if slots.len() < need {
                // Zeroed once per worker thread, then reused.
                slots.resize(need, 0);
            }
            let n = {
                let mut parts = slots[..need].chunks_mut(record13::SLOT);
                let mut iov: [io::IoSliceMut<'_>; SLOTS] = std::array::from_fn(|_| {
                    let part = parts.next().unwrap_or_default();
                    let end = part.len().min(record13::CONTENT_AT + record13::MAX_PLAIN);
                    io::IoSliceMut::new(part.get_mut(record13::CONTENT_AT..end).unwrap_or_default())
                });
                ready!(src.poll_read_vectored(cx, &mut iov)).map_err(Fail::Read)?
            };
            if n == 0 {
                return Poll::Ready(Ok(Moved::Eof));
            }
            let Some(own) = self.own.as_mut() else {
                return Poll::Ready(Err(Fail::Write(general("TLS connection state lost"))));
            };
            own.seal_due_key_update(&mut self.outgoing)
                .map_err(Fail::Write)?;
            // Full records fill their slots exactly, so the records are
            // contiguous: [0, end).
            let (mut end, mut left, mut i) = (0, n, 0);
            while left > 0 {
                let k = left.min(record13::MAX_PLAIN);
                let at = i * record13::SLOT;
                end = at + own.seal_slot(&mut slots[at..], k).map_err(Fail::Write)?;
                left -= k;
                i += 1;
            }
            if !self.outgoing.is_empty() {
                // Session tickets or a KeyUpdate of ours go first.
                self.outgoing.extend_from_slice(&slots[..end]);
                if let Poll::Ready(Err(e)) = self.poll_drain_out(cx) {
                    return Poll::Ready(Err(Fail::Write(e)));
                }
                return Poll::Ready(Ok(Moved::Bytes(n)));
            }
            let mut off = 0;
            while off < end {
                match Pin::new(&mut self.tcp).poll_write(cx, &slots[off..end]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Fail::Write(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(k)) => off += k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fail::Write(e))),
                    Poll::Pending => break,
                }
            }
            self.outgoing.extend_from_slice(&slots[off..end]);
            Poll::Ready(Ok(Moved::Bytes(n)))
        })
    }
}

impl<T: Transport> Pump<Stream> for TlsStream<T> {
    fn poll_pump_to(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut Stream,
    ) -> Option<Poll<Result<Moved, Fail>>> {
        if let Err(e) = self.switch_to_own() {
            return Some(Poll::Ready(Err(Fail::Read(e))));
        }
        self.own.as_ref()?;
        Some(self.pump_to(cx, dst))
    }

    fn poll_pump_from(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Stream,
    ) -> Option<Poll<Result<Moved, Fail>>> {
        if let Err(e) = self.switch_to_own() {
            return Some(Poll::Ready(Err(Fail::Read(e))));
        }
        self.own.as_ref()?;
        Some(self.pump_from(cx, src))
    }
}
