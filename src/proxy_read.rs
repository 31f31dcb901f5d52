//! Reading exactly one PROXY v1/v2 header from an async byte stream: the
//! one reader of the front door (a header from an upstream load balancer)
//! and of the bundled mail servers (the front door's header).
//!
//! Invariants: not one byte past the header is consumed, so what follows
//! (a ClientHello, an SMTP command) stays in the stream; a v2 header's
//! stated length is checked against `MAX_V2_LEN` before anything is
//! allocated for it; a v1 line is read byte by byte up to its 107-byte
//! limit. The caller bounds the wait.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::proxy_protocol::{self, DecodeError, Decoded, Header};

/// Why no header was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer sent something that is not a valid PROXY header.
    #[error("bad PROXY header: {0}")]
    Bad(#[from] DecodeError),
    /// The peer closed before the header was complete.
    #[error("connection closed before the PROXY header was complete")]
    Eof,
    #[error("I/O error reading the PROXY header: {0}")]
    Io(io::Error),
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            ReadError::Eof => io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()),
            ReadError::Bad(_) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// Read one PROXY header (v1 or v2) from `stream`, exactly.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Header, ReadError> {
    let mut buf = Vec::with_capacity(64);
    let eof = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Eof
        } else {
            ReadError::Io(e)
        }
    };
    // The first byte tells v1 from v2 (and from a client talking directly).
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.map_err(eof)?;
    buf.push(first[0]);
    if first[0] == proxy_protocol::V2_SIGNATURE[0] {
        let mut rest = [0u8; 15];
        stream.read_exact(&mut rest).await.map_err(eof)?;
        buf.extend_from_slice(&rest);
        // Validates signature, version and length before the body is read.
        if let Decoded::Complete { header, .. } = proxy_protocol::decode(&buf)? {
            return Ok(header);
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > proxy_protocol::MAX_V2_LEN {
            return Err(DecodeError::TooLong(16 + len).into());
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(eof)?;
        buf.extend_from_slice(&body);
    } else {
        loop {
            if let Decoded::Complete { .. } = proxy_protocol::decode(&buf)? {
                break;
            }
            stream.read_exact(&mut first).await.map_err(eof)?;
            buf.push(first[0]);
        }
    }
    match proxy_protocol::decode(&buf)? {
        Decoded::Complete { header, .. } => Ok(header),
        Decoded::Incomplete => Err(ReadError::Eof),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::{encode_v1, encode_v2, ConnInfo};

    #[tokio::test]
    async fn reads_exactly_one_header_of_either_version() {
        let src = "203.0.113.9:5555".parse().unwrap();
        let dst = "198.51.100.1:443".parse().unwrap();
        let info = ConnInfo {
            src,
            dst,
            alpn: None,
            authority: None,
            unique_id: None,
            ssl: None,
            identity: None,
        };
        for mut h in [encode_v2(&info, None), encode_v1(src, dst)] {
            h.extend_from_slice(b"\x16\x03\x01rest");
            let mut r = &h[..];
            assert_eq!(read_header(&mut r).await.unwrap().addrs, Some((src, dst)));
            assert_eq!(r, b"\x16\x03\x01rest");
        }
        for (bytes, want_eof) in [
            (&b"\x16\x03\x01\x02\x00\x01\x00"[..], false),
            (&b"PROXY TCP4 1.2.3.4"[..], true),
            (&proxy_protocol::V2_SIGNATURE[..8], true),
        ] {
            let mut r = bytes;
            let e = read_header(&mut r).await.unwrap_err();
            assert_eq!(matches!(e, ReadError::Eof), want_eof, "{e}");
        }
        // A v2 header announcing 64 KiB is refused from its length alone.
        let mut big = proxy_protocol::V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let mut r = &big[..];
        assert!(matches!(
            read_header(&mut r).await,
            Err(ReadError::Bad(DecodeError::TooLong(_)))
        ));
    }
}
