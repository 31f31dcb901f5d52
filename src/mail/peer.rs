//! Who is on the other end of a backend connection: reading the PROXY
//! header the front door sends, and deciding whether to believe it.
//!
//! Invariants: a header (and so a client address and an identity) is taken
//! only from a trusted source — a Unix-socket peer, or a TCP peer inside
//! `trusted_proxies`; anything else is refused before a byte is read. Exactly
//! the header's bytes are consumed (fixed 16-byte v2 prefix, then its stated
//! length; v1 byte by byte up to its 107-byte limit), so no client byte is
//! lost or taken for a header. With an identity secret configured, identity
//! TLVs without a valid HMAC refuse the connection.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::proxy_protocol::{self, Decoded, IdentityTlvs};

/// Where a connection came from at the socket level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tcp(SocketAddr),
    Unix,
}

/// Whom to believe.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    pub trusted: Vec<IpNet>,
    /// `client_auth.identity_secret`: identity TLVs must carry a valid HMAC.
    pub identity_secret: Option<Vec<u8>>,
}

impl TrustPolicy {
    pub fn trusts(&self, src: Source) -> bool {
        match src {
            Source::Unix => true,
            Source::Tcp(a) => self.trusted.iter().any(|n| n.contains(&a.ip())),
        }
    }
}

/// The facts about one client connection, as the front door told them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The real client address (from the header; the socket peer for LOCAL
    /// headers or direct connections; `None` for a Unix peer without one).
    pub client_addr: Option<SocketAddr>,
    /// The pinned-key identity, if the front door sent one (and it verified).
    pub identity: Option<IdentityTlvs>,
    /// The client spoke TLS to the front door.
    pub tls: bool,
    /// The negotiated ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The SNI name.
    pub sni: Option<String>,
    /// The front door's connection id, for matching log lines.
    pub unique_id: Option<String>,
}

impl PeerInfo {
    /// A peer known only by its socket address (no PROXY header: LMTP, inbound MX).
    pub fn direct(src: Source) -> Self {
        Self {
            client_addr: match src {
                Source::Tcp(a) => Some(a),
                Source::Unix => None,
            },
            identity: None,
            tls: false,
            alpn: None,
            sni: None,
            unique_id: None,
        }
    }
}

/// Why a connection was refused; each is logged and the connection closed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("PROXY header from untrusted source {0}")]
    Untrusted(SocketAddr),
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("bad PROXY header: {0}")]
    Bad(#[from] proxy_protocol::DecodeError),
    #[error("identity TLVs without a valid HMAC")]
    BadHmac,
    #[error("connection closed before the PROXY header was complete")]
    Eof,
    #[error("I/O error reading the PROXY header: {0}")]
    Io(std::io::Error),
}

async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<proxy_protocol::Header, ProxyError> {
    let mut buf = Vec::with_capacity(64);
    let eof = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyError::Eof
        } else {
            ProxyError::Io(e)
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
        // Validates signature/version before we trust the length.
        if let Decoded::Complete { header, .. } = proxy_protocol::decode(&buf)? {
            return Ok(header);
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > proxy_protocol::MAX_V2_LEN {
            return Err(proxy_protocol::DecodeError::TooLong(16 + len).into());
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
        Decoded::Incomplete => Err(ProxyError::Eof),
    }
}

/// Read the PROXY header from a connection from `source`, within `deadline`.
///
/// Refuses an untrusted source without reading, a missing or malformed
/// header, and (with a secret) identity TLVs without a valid HMAC.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    source: Source,
    trust: &TrustPolicy,
    deadline: Duration,
) -> Result<PeerInfo, ProxyError> {
    if let Source::Tcp(a) = source {
        if !trust.trusts(source) {
            return Err(ProxyError::Untrusted(a));
        }
    }
    let header = tokio::time::timeout(deadline, read_header(stream))
        .await
        .map_err(|_| ProxyError::Timeout(deadline))??;
    let mut identity = header.identity();
    if identity.is_some() {
        if let Some(secret) = &trust.identity_secret {
            if !header.verify_hmac(secret) {
                return Err(ProxyError::BadHmac);
            }
        }
    }
    if header.command == proxy_protocol::Command::Local {
        // A health check or the proxy itself: no client, no identity.
        identity = None;
    }
    let client_addr = header.addrs.map(|(src, _)| src).or(match source {
        Source::Tcp(a) => Some(a),
        Source::Unix => None,
    });
    let tls = header
        .ssl()
        .is_some_and(|s| s.client & proxy_protocol::PP2_CLIENT_SSL != 0);
    Ok(PeerInfo {
        client_addr,
        identity,
        tls,
        alpn: header.alpn().map(<[u8]>::to_vec),
        sni: header.authority().map(str::to_owned),
        unique_id: header
            .tlv(proxy_protocol::PP2_TYPE_UNIQUE_ID)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::{encode_v2, ConnInfo};

    fn info(identity: bool) -> ConnInfo {
        ConnInfo {
            src: "192.0.2.7:5555".parse().unwrap(),
            dst: "127.0.0.1:465".parse().unwrap(),
            alpn: Some(b"smtp".to_vec()),
            authority: None,
            unique_id: Some(b"c9".to_vec()),
            ssl: None,
            identity: identity.then(|| IdentityTlvs {
                account: "a@x".into(),
                login: "a@x".into(),
                key_name: "k".into(),
                fingerprint: [7; 32],
                no_imap_preauth: false,
            }),
        }
    }

    fn trust(secret: Option<&[u8]>) -> TrustPolicy {
        TrustPolicy {
            trusted: vec!["127.0.0.0/8".parse().unwrap()],
            identity_secret: secret.map(<[u8]>::to_vec),
        }
    }

    const LO: Source = Source::Tcp(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        1,
    ));
    const D: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn reads_exactly_the_header() {
        let mut bytes = encode_v2(&info(true), None);
        bytes.extend_from_slice(b"EHLO x\r\n");
        let mut r = &bytes[..];
        let p = read_proxy_header(&mut r, LO, &trust(None), D)
            .await
            .unwrap();
        assert_eq!(p.client_addr, Some("192.0.2.7:5555".parse().unwrap()));
        assert_eq!(p.identity.unwrap().account, "a@x");
        assert_eq!(p.unique_id.as_deref(), Some("c9"));
        assert_eq!(r, b"EHLO x\r\n");
        let mut v1 = proxy_protocol::encode_v1(
            "192.0.2.7:5555".parse().unwrap(),
            "127.0.0.1:1".parse().unwrap(),
        );
        v1.extend_from_slice(b"HELO");
        let mut r = &v1[..];
        read_proxy_header(&mut r, Source::Unix, &trust(None), D)
            .await
            .unwrap();
        assert_eq!(r, b"HELO");
    }

    #[tokio::test]
    async fn refusals() {
        let bytes = encode_v2(&info(true), None);
        let far = Source::Tcp("192.0.2.1:9".parse().unwrap());
        assert!(matches!(
            read_proxy_header(&mut &bytes[..], far, &trust(None), D).await,
            Err(ProxyError::Untrusted(_))
        ));
        assert!(matches!(
            read_proxy_header(&mut &b"EHLO x\r\n"[..], LO, &trust(None), D).await,
            Err(ProxyError::Bad(_))
        ));
        assert!(matches!(
            read_proxy_header(&mut &bytes[..], LO, &trust(Some(b"s")), D).await,
            Err(ProxyError::BadHmac)
        ));
        let signed = encode_v2(&info(true), Some(b"s"));
        assert!(
            read_proxy_header(&mut &signed[..], LO, &trust(Some(b"s")), D)
                .await
                .is_ok()
        );
        let wrong = encode_v2(&info(true), Some(b"t"));
        assert!(
            read_proxy_header(&mut &wrong[..], LO, &trust(Some(b"s")), D)
                .await
                .is_err()
        );
        // No identity: no HMAC needed.
        let plain = encode_v2(&info(false), None);
        assert!(
            read_proxy_header(&mut &plain[..], LO, &trust(Some(b"s")), D)
                .await
                .is_ok()
        );
    }
}
