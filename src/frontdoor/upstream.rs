//! Reading a PROXY v1/v2 header from an upstream layer-4 load balancer
//! before the TLS handshake (`accept_proxy_protocol` on a listener).
//!
//! Reads exactly the header's bytes and not one more, so the ClientHello
//! that follows stays in the socket for rustls. The caller bounds the wait.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::proxy_protocol::{decode, Decoded, MAX_V1_LEN};

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The (client, destination) addresses the header carries; `None` for a
/// LOCAL command or `UNKNOWN`/`UNSPEC` family (keep the socket's addresses).
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> io::Result<Option<(SocketAddr, SocketAddr)>> {
    let mut buf = vec![0u8; 6];
    s.read_exact(&mut buf).await?;
    if &buf[..] == b"PROXY " {
        // v1: a line of at most 107 bytes; read it byte by byte.
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= MAX_V1_LEN {
                return Err(bad("PROXY v1 line too long"));
            }
            s.read_exact(&mut b).await?;
            buf.push(b[0]);
        }
    } else {
        buf.resize(16, 0);
        s.read_exact(&mut buf[6..]).await?;
        if let Err(e) = decode(&buf) {
            return Err(bad(e));
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        buf.resize(16 + len, 0);
        if 16 + len > crate::proxy_protocol::MAX_V2_LEN {
            return Err(bad("PROXY v2 header too long"));
        }
        s.read_exact(&mut buf[16..]).await?;
    }
    match decode(&buf).map_err(bad)? {
        Decoded::Complete { header, .. } => Ok(header.addrs),
        Decoded::Incomplete => Err(bad("incomplete PROXY header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::{encode_v1, encode_v2, ConnInfo};

    #[tokio::test]
    async fn reads_exactly_the_header() {
        let src: SocketAddr = "203.0.113.9:5555".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
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
            assert_eq!(read_header(&mut r).await.unwrap(), Some((src, dst)));
            assert_eq!(r, b"\x16\x03\x01rest");
        }
        let mut r = &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage...."[..];
        assert!(read_header(&mut r).await.is_err());
    }
}
