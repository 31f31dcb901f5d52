//! Reading a PROXY v1/v2 header from an upstream layer-4 load balancer
//! before the TLS handshake (`accept_proxy_protocol` on a listener).
//!
//! Reads exactly the header's bytes and not one more (through the one
//! reader, `proxy_read`), so the ClientHello that follows stays in the
//! socket for rustls. The caller bounds the wait.

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncRead;

/// The (client, destination) addresses the header carries; `None` for a
/// LOCAL command or `UNKNOWN`/`UNSPEC` family (keep the socket's addresses).
/// The header is read by the one PROXY reader, [`crate::proxy_read`].
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> io::Result<Option<(SocketAddr, SocketAddr)>> {
    Ok(crate::proxy_read::read_header(s).await?.addrs)
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
