//! The session's byte stream, plain or under `COMPRESS=DEFLATE` (RFC 4978),
//! and the COMPRESS command.
//!
//! After the tagged OK of `COMPRESS DEFLATE` both directions are one raw
//! deflate stream each (RFC 1951, no zlib header, RFC 4978 §3). Every
//! response batch ends with a sync flush (RFC 4978 §4: an empty stored
//! block), so the client can decode all of it at once, which IDLE needs.
//!
//! Memory: the inflater must keep the client's 32 KiB window for the
//! connection's life (the client may refer back to any earlier byte). The
//! compressor (about 240 KiB with the pure-Rust backend, which has no
//! smaller window) lives only while output flows: it is dropped once the
//! client has been silent for [`COMPRESSOR_REST`] or the session enters
//! IDLE, and a fresh one starts the next response. That is still one valid
//! deflate stream: a sync flush ends on a byte boundary, a fresh compressor
//! refers to nothing before it and writes no header, so its blocks simply
//! follow. The figures are in `docs/imap.md`.
//!
//! Invariants: inflated bytes go only into the spare capacity the caller
//! reserved, so a small input that inflates hugely cannot grow the session
//! buffer past what the command parser's limits allow; [`Conn::read_buf`] is
//! cancel-safe (its one await is a cancel-safe read into a buffer of its
//! own), so IDLE can select on it.

use std::io;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::reply::{bad, no, Reply};
use super::{ImapError, Session, KEEP_BUFFER};
use crate::mail::imap::response::{self, Code, Status as ImapStatus};

/// Client silence after which the compressor is dropped (it is recreated,
/// empty, for the next response).
pub(super) const COMPRESSOR_REST: Duration = Duration::from_secs(10);
/// Deflate level: 6, zlib's default and what chatmail's Dovecot uses
/// (`imap_compress_deflate_level`).
const LEVEL: u32 = 6;
/// Compressed bytes read from the client at a time.
const RAW_READ: usize = 4096;
/// The first read after a rest.
const RESTING_READ: usize = 512;
/// Bound on compressor rounds for one write (each round adds output space;
/// deflate output is at most a little larger than its input).
const MAX_ROUNDS: usize = 1 << 16;

/// The session's connection: the peer stream, compressed or not.
pub(super) struct Conn<S> {
    io: S,
    deflate: Option<Box<Deflate>>,
}

/// Both directions' deflate state.
struct Deflate {
    inflate: Decompress,
    /// `None` while resting (see the module doc).
    compress: Option<Compress>,
    /// Compressed client bytes read but not yet inflated, from `raw_pos`.
    raw_in: Vec<u8>,
    raw_pos: usize,
    /// Compressed output of the current write.
    raw_out: Vec<u8>,
    /// Uncompressed and wire bytes, each direction.
    plain_in: u64,
    wire_in: u64,
    plain_out: u64,
    wire_out: u64,
}

/// Byte counts of a compressed session, for its closing log line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DeflateCounts {
    pub(super) plain_in: u64,
    pub(super) wire_in: u64,
    pub(super) plain_out: u64,
    pub(super) wire_out: u64,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("COMPRESS: {e}"))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(io: S) -> Self {
        Self { io, deflate: None }
    }

    pub(super) fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    pub(super) fn counts(&self) -> Option<DeflateCounts> {
        self.deflate.as_ref().map(|d| DeflateCounts {
            plain_in: d.plain_in,
            wire_in: d.wire_in,
            plain_out: d.plain_out,
            wire_out: d.wire_out,
        })
    }

    /// Start deflate in both directions; `pending` are client bytes already
    /// read after the COMPRESS command, which are compressed.
    pub(super) fn start_deflate(&mut self, pending: Vec<u8>) {
        self.deflate = Some(Box::new(Deflate {
            inflate: Decompress::new(false),
            compress: None,
            wire_in: pending.len() as u64,
            raw_in: pending,
            raw_pos: 0,
            raw_out: Vec::new(),
            plain_in: 0,
            plain_out: 0,
            wire_out: 0,
        }));
    }

    /// Drop the compressor until the next write (see the module doc).
    pub(super) fn rest(&mut self) {
        if let Some(d) = self.deflate.as_mut() {
            d.compress = None;
            d.raw_out = Vec::new();
            if d.raw_pos >= d.raw_in.len() {
                d.raw_in = Vec::new();
                d.raw_pos = 0;
            }
        }
    }

    /// Read client bytes into the spare capacity of `buf` (inflated when
    /// compressed); 0 at end of stream. Cancel-safe.
    pub(super) async fn read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let Conn { io, deflate } = self;
        let Some(d) = deflate.as_mut() else {
            return io.read_buf(buf).await;
        };
        if buf.capacity() == buf.len() {
            buf.reserve(RAW_READ);
        }
        loop {
            // The inflater may hold output from input it took earlier (when
            // the caller's space ran out), so it is asked even with no new
            // input. Input that yields nothing (a sync flush marker) is
            // consumed without output: keep going while input is taken.
            for _ in 0..8 {
                let (used, made) = d.inflate_into(buf)?;
                if made > 0 {
                    return Ok(made);
                }
                if used == 0 || d.raw_pos >= d.raw_in.len() {
                    break;
                }
            }
            // Everything read so far is inflated: make room for more.
            d.raw_in.drain(..d.raw_pos);
            d.raw_pos = 0;
            if d.raw_in.is_empty() && d.raw_in.capacity() > KEEP_BUFFER {
                d.raw_in = Vec::new();
            }
            // Small while resting: the read may wait for hours.
            d.raw_in.reserve(if d.raw_in.capacity() == 0 {
                RESTING_READ
            } else {
                RAW_READ
            });
            let n = io.read_buf(&mut d.raw_in).await?;
            if n == 0 {
                return Ok(0);
            }
            d.wire_in += n as u64;
        }
    }

    /// Write `data` (compressed and sync-flushed when compression is on)
    /// and flush the stream.
    pub(super) async fn write_flush(&mut self, data: &[u8]) -> io::Result<()> {
        let Conn { io, deflate } = self;
        match deflate.as_mut() {
            None => io.write_all(data).await?,
            Some(d) => {
                d.deflate_from(data)?;
                io.write_all(&d.raw_out).await?;
                d.wire_out += d.raw_out.len() as u64;
                d.raw_out.clear();
            }
        }
        io.flush().await
    }

    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

impl Deflate {
    /// Inflate from `raw_in` into the spare capacity of `out`; returns the
    /// input bytes used and the bytes produced.
    fn inflate_into(&mut self, out: &mut Vec<u8>) -> io::Result<(usize, usize)> {
        let before_out = self.inflate.total_out();
        let before_in = self.inflate.total_in();
        let input = self.raw_in.get(self.raw_pos..).unwrap_or_default();
        let status = self
            .inflate
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(invalid)?;
        let used = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(usize::MAX);
        self.raw_pos = self.raw_pos.saturating_add(used).min(self.raw_in.len());
        let made = usize::try_from(self.inflate.total_out() - before_out).unwrap_or(0);
        self.plain_in += made as u64;
        if status == Status::StreamEnd && made == 0 {
            // RFC 4978 has no end of the compressed stream but the connection's.
            return Err(invalid("client ended its deflate stream"));
        }
        Ok((used, made))
    }

    /// Compress `data` with a sync flush into `raw_out`.
    fn deflate_from(&mut self, data: &[u8]) -> io::Result<()> {
        let c = self
            .compress
            .get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        self.plain_out += data.len() as u64;
        let mut used = 0usize;
        for _ in 0..MAX_ROUNDS {
            self.raw_out.reserve((data.len() - used) / 2 + 64);
            let before = c.total_in();
            let rest = data.get(used..).unwrap_or_default();
            c.compress_vec(rest, &mut self.raw_out, FlushCompress::Sync)
                .map_err(invalid)?;
            used += usize::try_from(c.total_in() - before).unwrap_or(0);
            // The sync flush is complete once all input is taken and the
            // compressor left output space unused.
            if used >= data.len() && self.raw_out.len() < self.raw_out.capacity() {
                return Ok(());
            }
        }
        Err(invalid("compressor made no progress"))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `COMPRESS DEFLATE` (RFC 4978 §3): the tagged OK goes out
    /// uncompressed, everything after it is compressed. Writes its own
    /// tagged reply on success.
    pub(super) async fn compress(
        &mut self,
        tag: &str,
        mechanism: &str,
    ) -> Result<Option<Reply>, ImapError> {
        if !self.offers_compress() {
            return Ok(Some(no(Some(Code::Cannot), "COMPRESS not offered")));
        }
        if self.stream.compressed() {
            return Ok(Some(no(
                Some(Code::CompressionActive),
                "compression is already on",
            )));
        }
        if !mechanism.eq_ignore_ascii_case("DEFLATE") {
            return Ok(Some(bad("the only compression mechanism is DEFLATE")));
        }
        response::tagged(&mut self.out, tag, ImapStatus::Ok, None, "DEFLATE active");
        self.flush().await?;
        let pending = std::mem::take(&mut self.buf);
        self.stream.start_deflate(pending);
        tracing::info!(
            account = self.state.account().unwrap_or(""),
            compress = "DEFLATE",
            "compression on"
        );
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server output, decoded by a client inflater kept across writes,
    /// stays one deflate stream when the compressor rests in between.
    #[tokio::test]
    async fn resting_compressor_keeps_one_stream() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server);
        conn.start_deflate(Vec::new());
        let mut client = client;
        let mut inflater = Decompress::new(false);
        let mut seen = Vec::with_capacity(1 << 16);
        for (i, text) in ["* OK one\r\n", "* 1 EXISTS\r\n", "a OK done\r\n"]
            .iter()
            .enumerate()
        {
            conn.write_flush(text.as_bytes()).await.unwrap();
            if i == 1 {
                conn.rest();
            }
            let mut wire = vec![0u8; 4096];
            let n = client.read(&mut wire).await.unwrap();
            assert!(
                wire[..n].ends_with(&[0, 0, 0xff, 0xff]),
                "sync flush marker"
            );
            inflater
                .decompress_vec(&wire[..n], &mut seen, FlushDecompress::None)
                .unwrap();
        }
        assert_eq!(seen, b"* OK one\r\n* 1 EXISTS\r\na OK done\r\n");
    }

    /// Client bytes inflate into the caller's spare capacity only.
    #[tokio::test]
    async fn inflate_is_bounded_by_spare_capacity() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server);
        conn.start_deflate(Vec::new());
        let mut c = Compress::new(Compression::new(6), false);
        let big = vec![b'a'; 100_000];
        let mut wire = Vec::with_capacity(200_000);
        c.compress_vec(&big, &mut wire, FlushCompress::Sync)
            .unwrap();
        client.write_all(&wire).await.unwrap();
        let mut buf = Vec::with_capacity(1000);
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0 && buf.len() <= 1000 && buf.capacity() == 1000, "{n}");
        let mut total = n;
        for _ in 0..1000 {
            if total == big.len() {
                break;
            }
            buf.clear();
            total += tokio::time::timeout(Duration::from_secs(5), conn.read_buf(&mut buf))
                .await
                .expect("pending output is handed out without new input")
                .unwrap();
        }
        assert_eq!(total, big.len());
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server);
        conn.start_deflate(b"\xff\xff\xff\xff".to_vec());
        client.write_all(b"\xff\xfe").await.unwrap();
        let mut buf = Vec::with_capacity(100);
        let e = conn.read_buf(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
