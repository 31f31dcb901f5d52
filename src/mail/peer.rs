//! Who is on the other end of a backend connection: reading the PROXY
//! header the front door sends, and deciding whether to believe it.
//!
//! Invariants:
//! - a header (and so a client address) is taken only from a trusted source:
//!   a Unix-socket peer whose uid (`SO_PEERCRED`) is the front door's own or
//!   listed in `mail.trusted_uids`, or a TCP peer inside `trusted_proxies`;
//!   anything else is refused before a byte is read;
//! - an *identity* is honoured only when it is authenticated: with an
//!   identity secret, by a valid HMAC over a header whose timestamp is
//!   inside `identity_max_age` and whose tag was not seen before; without a
//!   secret, only from an allowed Unix-socket peer. Over TCP an identity
//!   without a secret is refused: loopback is not a trust boundary;
//! - exactly the header's bytes are consumed (fixed 16-byte v2 prefix, then
//!   its stated length; v1 byte by byte up to its 107-byte limit), so no
//!   client byte is lost or taken for a header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncRead;

use crate::proxy_protocol::{self, IdentityTlvs};

/// Where a connection came from at the socket level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tcp(SocketAddr),
    /// A Unix-socket peer and its uid (`SO_PEERCRED`), when the kernel told it.
    Unix {
        uid: Option<u32>,
    },
}

/// How long a signed header stays valid by default (`mail.identity_max_age`).
pub const DEFAULT_IDENTITY_MAX_AGE: Duration = Duration::from_secs(30);
/// Most HMAC tags remembered for replay detection.
const REPLAY_CAPACITY: usize = 65_536;

/// HMAC tags seen inside the freshness window: a header is accepted once.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl ReplayGuard {
    /// Record `tag`, valid until `expires_ms`; false if it was already seen
    /// (a replay) or the table is full of live entries (refuse, fail closed).
    fn first_use(&self, tag: &[u8], now_ms: u64, expires_ms: u64) -> bool {
        let Ok(key) = <[u8; 32]>::try_from(tag) else {
            return false;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() >= REPLAY_CAPACITY {
            seen.retain(|_, exp| *exp > now_ms);
            if seen.len() >= REPLAY_CAPACITY {
                return false;
            }
        }
        match seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) if *e.get() <= now_ms => {
                e.insert(expires_ms);
                true
            }
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(expires_ms);
                true
            }
        }
    }
}

/// Whom to believe.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// TCP sources allowed to send a PROXY header.
    pub trusted: Vec<IpNet>,
    /// Unix-socket peers allowed to send a PROXY header: the front door's
    /// uid (this process's) and `mail.trusted_uids`.
    pub unix_uids: Vec<u32>,
    /// The identity secret: identity TLVs must carry a valid, fresh HMAC.
    pub identity_secret: Option<Vec<u8>>,
    /// How old a signed header may be (either way, for clock steps).
    pub max_age: Duration,
    pub replay: Arc<ReplayGuard>,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            unix_uids: own_uid().into_iter().collect(),
            identity_secret: None,
            max_age: DEFAULT_IDENTITY_MAX_AGE,
            replay: Arc::default(),
        }
    }
}

/// This process's uid: the owner of `/proc/self` (no `unsafe` needed).
pub fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

impl TrustPolicy {
    pub fn trusts(&self, src: Source) -> bool {
        match src {
            Source::Unix { uid } => uid.is_some_and(|u| self.unix_uids.contains(&u)),
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
                Source::Unix { .. } => None,
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
    #[error("PROXY header on a Unix socket from uid {}, which is neither the front door's nor in mail.trusted_uids", .0.map_or("unknown".to_string(), |u| u.to_string()))]
    UntrustedUid(Option<u32>),
    #[error("identity TLVs over TCP without an identity secret: refused (set client_auth.identity_secret)")]
    UnauthenticatedIdentity,
    #[error("signed PROXY header outside the {0:?} freshness window (captured or clock off)")]
    Stale(Duration),
    #[error("signed PROXY header seen before (replayed)")]
    Replayed,
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

impl ProxyError {
    /// A short name from a fixed set, for the log's `refused` field.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Untrusted(_) => "untrusted",
            Self::UntrustedUid(_) => "untrusted_uid",
            Self::UnauthenticatedIdentity => "unauthenticated_identity",
            Self::Stale(_) => "stale",
            Self::Replayed => "replayed",
            Self::Timeout(_) => "timeout",
            Self::Bad(_) => "bad_header",
            Self::BadHmac => "bad_hmac",
            Self::Eof => "eof",
            Self::Io(_) => "io_error",
        }
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
    match source {
        Source::Tcp(a) if !trust.trusts(source) => return Err(ProxyError::Untrusted(a)),
        Source::Unix { uid } if !trust.trusts(source) => return Err(ProxyError::UntrustedUid(uid)),
        _ => {}
    }
    let header = tokio::time::timeout(deadline, crate::proxy_read::read_header(stream))
        .await
        .map_err(|_| ProxyError::Timeout(deadline))?
        .map_err(|e| match e {
            crate::proxy_read::ReadError::Bad(e) => ProxyError::Bad(e),
            crate::proxy_read::ReadError::Eof => ProxyError::Eof,
            crate::proxy_read::ReadError::Io(e) => ProxyError::Io(e),
        })?;
    let mut identity = header.identity();
    if identity.is_some() {
        authenticate(&header, source, trust, proxy_protocol::unix_millis_now())?;
    }
    if header.command == proxy_protocol::Command::Local {
        // A health check or the proxy itself: no client, no identity.
        identity = None;
    }
    let client_addr = header.addrs.map(|(src, _)| src).or(match source {
        Source::Tcp(a) => Some(a),
        Source::Unix { .. } => None,
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

/// Is the identity in `header` authenticated? With a secret: a valid HMAC,
/// a timestamp inside the window, and a tag not seen before. Without one:
/// only from an allowed Unix-socket peer (checked before the read).
fn authenticate(
    header: &proxy_protocol::Header,
    source: Source,
    trust: &TrustPolicy,
    now_ms: u64,
) -> Result<(), ProxyError> {
    let Some(secret) = &trust.identity_secret else {
        return match source {
            Source::Unix { .. } => Ok(()),
            Source::Tcp(_) => Err(ProxyError::UnauthenticatedIdentity),
        };
    };
    if !header.verify_hmac(secret) {
        return Err(ProxyError::BadHmac);
    }
    let window = trust.max_age.as_millis() as u64;
    let fresh = header
        .timestamp_ms()
        .is_some_and(|ts| ts.abs_diff(now_ms) <= window);
    if !fresh {
        return Err(ProxyError::Stale(trust.max_age));
    }
    let tag = header.hmac_tag().ok_or(ProxyError::BadHmac)?;
    // Remembered for twice the window: the timestamp may lie ahead of us by
    // up to one window.
    if !trust
        .replay
        .first_use(tag, now_ms, now_ms.saturating_add(2 * window))
    {
        return Err(ProxyError::Replayed);
    }
    Ok(())
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
            unix_uids: vec![1000],
            identity_secret: secret.map(<[u8]>::to_vec),
            ..TrustPolicy::default()
        }
    }
    const ME: Source = Source::Unix { uid: Some(1000) };

    const LO: Source = Source::Tcp(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        1,
    ));
    const D: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn reads_exactly_the_header() {
        let mut bytes = encode_v2(&info(true), Some(b"s"));
        bytes.extend_from_slice(b"EHLO x\r\n");
        let mut r = &bytes[..];
        let p = read_proxy_header(&mut r, LO, &trust(Some(b"s")), D)
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
        read_proxy_header(&mut r, ME, &trust(None), D)
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
        // Over TCP an identity is never taken without a secret.
        assert!(matches!(
            read_proxy_header(&mut &bytes[..], LO, &trust(None), D).await,
            Err(ProxyError::UnauthenticatedIdentity)
        ));
        // From the front door's uid on a Unix socket it is; from another uid
        // nothing is read at all.
        assert!(read_proxy_header(&mut &bytes[..], ME, &trust(None), D)
            .await
            .unwrap()
            .identity
            .is_some());
        for other in [Some(0), Some(65534), None] {
            assert!(matches!(
                read_proxy_header(&mut &bytes[..], Source::Unix { uid: other }, &trust(None), D).await,
                Err(ProxyError::UntrustedUid(u)) if u == other
            ));
        }
        // No identity: no HMAC needed.
        let plain = encode_v2(&info(false), None);
        assert!(
            read_proxy_header(&mut &plain[..], LO, &trust(Some(b"s")), D)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn signed_headers_are_fresh_and_used_once() {
        let t = trust(Some(b"s"));
        let now = proxy_protocol::unix_millis_now();
        let fresh = proxy_protocol::encode_v2_at(&info(true), Some(b"s"), now);
        assert!(read_proxy_header(&mut &fresh[..], LO, &t, D).await.is_ok());
        // The same bytes again: a replay.
        assert!(matches!(
            read_proxy_header(&mut &fresh[..], LO, &t, D).await,
            Err(ProxyError::Replayed)
        ));
        // Made 31 s ago or 31 s ahead: outside the 30 s window.
        for ts in [now - 31_000, now + 31_000] {
            let old = proxy_protocol::encode_v2_at(&info(true), Some(b"s"), ts);
            assert!(matches!(
                read_proxy_header(&mut &old[..], LO, &t, D).await,
                Err(ProxyError::Stale(_))
            ));
        }
        // Inside the window but a few seconds old: fine.
        let recent = proxy_protocol::encode_v2_at(&info(true), Some(b"s"), now - 5_000);
        assert!(read_proxy_header(&mut &recent[..], LO, &t, D).await.is_ok());
    }

    #[test]
    fn replay_table_expires_and_fails_closed_when_full() {
        let g = ReplayGuard::default();
        assert!(g.first_use(&[1; 32], 10, 20));
        assert!(!g.first_use(&[1; 32], 15, 25));
        // Expired entries may be used again (their timestamp is stale anyway).
        assert!(g.first_use(&[1; 32], 21, 30));
        for i in 0..REPLAY_CAPACITY as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 9;
            g.first_use(&k, 100, 200);
        }
        assert!(
            !g.first_use(&[2; 32], 150, 250),
            "full of live tags: refuse"
        );
        assert!(g.first_use(&[2; 32], 300, 400), "expired tags are dropped");
    }
}
