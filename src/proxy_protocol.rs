//! PROXY protocol v1 and v2: encoding (front door → backend) and decoding
//! (bundled backends, upstream load balancers).
//!
//! The wire format is HAProxy's `proxy-protocol.txt` (version 2 binary
//! header, version 1 text line). Every TLV type number frontdoor writes or
//! reads is defined here, and only here, including frontdoor's own identity
//! TLVs in the custom range `0xE0..=0xEF` (§2.2.8 of the spec reserves that
//! range for application-specific data).
//!
//! Invariants:
//! - the decoder is pure: it takes bytes and answers `Complete`, or
//!   `Incomplete` (need more bytes), or an error; it never reads past the
//!   header, so whatever follows it is payload;
//! - a v2 header is at most `MAX_V2_LEN` bytes and a v1 line at most 107
//!   bytes (§2.1); anything longer is an error, not a buffer to grow;
//! - with an identity secret the HMAC TLV is last and covers the whole header
//!   with its own value zeroed (the same trick as `PP2_TYPE_CRC32C`, §2.2.5),
//!   and a timestamp TLV just before it, so that a receiver can refuse a
//!   captured header once it is older than a small window.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The 12-byte v2 signature (§2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Upper bound we accept for a whole v2 header (fixed 16 bytes + payload).
/// The spec allows 65535 payload bytes; nothing legitimate needs more than a
/// few hundred, so a hostile peer cannot make a backend buffer 64 KiB.
pub const MAX_V2_LEN: usize = 16 + 4096;
/// Longest valid v1 line, CRLF included (§2.1).
pub const MAX_V1_LEN: usize = 107;

// Standard TLV types (§2.2.1 – §2.2.7).
pub const PP2_TYPE_ALPN: u8 = 0x01;
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
pub const PP2_TYPE_CRC32C: u8 = 0x03;
pub const PP2_TYPE_NOOP: u8 = 0x04;
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
pub const PP2_TYPE_SSL: u8 = 0x20;
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
pub const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
pub const PP2_SUBTYPE_SSL_SIG_ALG: u8 = 0x24;
pub const PP2_SUBTYPE_SSL_KEY_ALG: u8 = 0x25;
pub const PP2_TYPE_NETNS: u8 = 0x30;

// `PP2_TYPE_SSL` client flags (§2.2.6).
pub const PP2_CLIENT_SSL: u8 = 0x01;
pub const PP2_CLIENT_CERT_CONN: u8 = 0x02;
pub const PP2_CLIENT_CERT_SESS: u8 = 0x04;

// frontdoor's identity TLVs, in the custom range 0xE0..=0xEF (§2.2.8).
/// Account name (UTF-8), e.g. `alice@example.org`.
pub const FD_TYPE_ACCOUNT: u8 = 0xE0;
/// Login address (UTF-8) the pinned key logs in as.
pub const FD_TYPE_LOGIN: u8 = 0xE1;
/// SHA-256 of the client's DER SubjectPublicKeyInfo: 32 raw bytes.
pub const FD_TYPE_KEY_FINGERPRINT: u8 = 0xE2;
/// One byte of flags; see `FD_FLAG_*`.
pub const FD_TYPE_FLAGS: u8 = 0xE3;
/// Registry name of the key (UTF-8), e.g. `alice-phone`; informational.
pub const FD_TYPE_KEY_NAME: u8 = 0xE4;
/// When the header was made: 8 bytes, big-endian milliseconds since the
/// Unix epoch. Written with the HMAC (which covers it), just before it.
pub const FD_TYPE_TIMESTAMP: u8 = 0xE5;
/// HMAC-SHA256 (32 bytes) over the whole header with this value zeroed.
/// Always the last TLV when present.
pub const FD_TYPE_HMAC: u8 = 0xEF;
/// Flags bit 0: the client does not want an IMAP `PREAUTH` greeting.
pub const FD_FLAG_NO_IMAP_PREAUTH: u8 = 0x01;

const HMAC_LEN: usize = 32;

/// Which header a route writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    None,
}

/// TLS facts for `PP2_TYPE_SSL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslInfo {
    /// The client presented a certificate on this connection.
    pub client_cert: bool,
    /// The presented key is pinned in the registry (`verify` = 0).
    pub verified: bool,
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// Signature algorithm of the server certificate, when known.
    pub sig_alg: Option<String>,
    /// Key algorithm of the server certificate, when known.
    pub key_alg: Option<String>,
    /// `PP2_SUBTYPE_SSL_CN`: only ever the registry's login for a pinned key.
    pub cn: Option<String>,
    /// The TLS session was resumed: the certificate was presented on an
    /// earlier connection of the session (`PP2_CLIENT_CERT_SESS`), not on
    /// this one (`PP2_CLIENT_CERT_CONN`).
    pub resumed: bool,
}

/// The authenticated identity as it travels to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityTlvs {
    pub account: String,
    pub login: String,
    pub key_name: String,
    pub fingerprint: [u8; 32],
    pub no_imap_preauth: bool,
}

/// Everything a backend learns about one client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub alpn: Option<Vec<u8>>,
    pub authority: Option<String>,
    pub unique_id: Option<Vec<u8>>,
    pub ssl: Option<SslInfo>,
    pub identity: Option<IdentityTlvs>,
}

/// Encode a PROXY v1 line (§2.1). Mixed families map the IPv4 side into IPv6.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    fn v6(a: SocketAddr) -> SocketAddr {
        match a.ip() {
            IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        }
    }
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

fn push_tlv(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    // Values come from config, registry and rustls; none come near 64 KiB, but
    // never write a wrong length if one did.
    let len = value.len().min(u16::MAX as usize);
    out.push(ty);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&value[..len]);
}

/// Milliseconds since the Unix epoch, as [`FD_TYPE_TIMESTAMP`] carries them.
pub fn unix_millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Encode a PROXY v2 header (§2.2) for a proxied TCP connection.
/// With `secret`, a timestamp TLV (now) and an HMAC TLV are appended last
/// (see module docs).
pub fn encode_v2(info: &ConnInfo, secret: Option<&[u8]>) -> Vec<u8> {
    encode_v2_at(info, secret, unix_millis_now())
}

/// [`encode_v2`] with the timestamp given (milliseconds since the epoch).
pub fn encode_v2_at(info: &ConnInfo, secret: Option<&[u8]>, now_ms: u64) -> Vec<u8> {
    let (src, dst) = same_family(info.src, info.dst);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&[0, 0]);
            let ip6 = |a: SocketAddr| match a.ip() {
                IpAddr::V6(ip) => ip.octets(),
                IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            };
            out.extend_from_slice(&ip6(s));
            out.extend_from_slice(&ip6(d));
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    if let Some(alpn) = &info.alpn {
        push_tlv(&mut out, PP2_TYPE_ALPN, alpn);
    }
    if let Some(sni) = &info.authority {
        push_tlv(&mut out, PP2_TYPE_AUTHORITY, sni.as_bytes());
    }
    if let Some(id) = &info.unique_id {
        // §2.2.4: at most 128 bytes.
        push_tlv(&mut out, PP2_TYPE_UNIQUE_ID, &id[..id.len().min(128)]);
    }
    if let Some(ssl) = &info.ssl {
        let mut v = Vec::with_capacity(96);
        let mut client = PP2_CLIENT_SSL;
        if ssl.client_cert {
            client |= if ssl.resumed {
                PP2_CLIENT_CERT_SESS
            } else {
                PP2_CLIENT_CERT_CONN
            };
        }
        v.push(client);
        let verify: u32 = if ssl.verified { 0 } else { 1 };
        v.extend_from_slice(&verify.to_be_bytes());
        push_tlv(&mut v, PP2_SUBTYPE_SSL_VERSION, ssl.version.as_bytes());
        if let (true, Some(cn)) = (ssl.verified, &ssl.cn) {
            push_tlv(&mut v, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
        }
        push_tlv(&mut v, PP2_SUBTYPE_SSL_CIPHER, ssl.cipher.as_bytes());
        if let Some(s) = &ssl.sig_alg {
            push_tlv(&mut v, PP2_SUBTYPE_SSL_SIG_ALG, s.as_bytes());
        }
        if let Some(k) = &ssl.key_alg {
            push_tlv(&mut v, PP2_SUBTYPE_SSL_KEY_ALG, k.as_bytes());
        }
        push_tlv(&mut out, PP2_TYPE_SSL, &v);
    }
    if let Some(id) = &info.identity {
        push_tlv(&mut out, FD_TYPE_ACCOUNT, id.account.as_bytes());
        push_tlv(&mut out, FD_TYPE_LOGIN, id.login.as_bytes());
        push_tlv(&mut out, FD_TYPE_KEY_FINGERPRINT, &id.fingerprint);
        let flags = if id.no_imap_preauth {
            FD_FLAG_NO_IMAP_PREAUTH
        } else {
            0
        };
        push_tlv(&mut out, FD_TYPE_FLAGS, &[flags]);
        push_tlv(&mut out, FD_TYPE_KEY_NAME, id.key_name.as_bytes());
    }
    if let Some(secret) = secret {
        push_tlv(&mut out, FD_TYPE_TIMESTAMP, &now_ms.to_be_bytes());
        push_tlv(&mut out, FD_TYPE_HMAC, &[0u8; HMAC_LEN]);
        set_len(&mut out);
        let tag = hmac_tag(secret, &out);
        let n = out.len();
        out[n - HMAC_LEN..].copy_from_slice(&tag);
    } else {
        set_len(&mut out);
    }
    out
}

fn set_len(out: &mut [u8]) {
    let len = (out.len() - 16).min(u16::MAX as usize) as u16;
    out[14..16].copy_from_slice(&len.to_be_bytes());
}

fn hmac_tag(secret: &[u8], header_with_zeroed_tag: &[u8]) -> [u8; HMAC_LEN] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; HMAC_LEN],
    };
    mac.update(header_with_zeroed_tag);
    mac.finalize().into_bytes().into()
}

/// Decoder errors: all of them mean the peer did not speak PROXY protocol
/// correctly; the connection is to be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("unsupported PROXY v2 version/command byte {0:#04x}")]
    BadVersion(u8),
    #[error("unsupported PROXY v2 family/protocol byte {0:#04x}")]
    BadFamily(u8),
    #[error("PROXY header too long ({0} bytes)")]
    TooLong(usize),
    #[error("PROXY v2 address block shorter than its family needs")]
    ShortAddresses,
    #[error("malformed PROXY v2 TLV at offset {0}")]
    BadTlv(usize),
    #[error("malformed PROXY v1 line: {0}")]
    BadV1(&'static str),
}

/// Result of feeding bytes to the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header; `len` bytes of the input belong to it.
    Complete { header: Header, len: usize },
    /// Not enough bytes yet to decide; read more and call again.
    Incomplete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A health check or the proxy's own connection: use the real addresses.
    Local,
    Proxy,
}

/// A decoded `PP2_TYPE_SSL` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslTlv {
    /// `PP2_CLIENT_*` flags.
    pub client: u8,
    /// 0 when the client presented a certificate that was verified.
    pub verify: u32,
    /// Sub-TLVs in order.
    pub subs: Vec<(u8, Vec<u8>)>,
}

impl SslTlv {
    pub fn sub(&self, ty: u8) -> Option<&[u8]> {
        self.subs
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v.as_slice())
    }
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub command: Command,
    /// Client and proxy addresses; `None` for LOCAL, UNSPEC, UNIX or v1 UNKNOWN.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// All top-level TLVs in order (v2 only).
    pub tlvs: Vec<(u8, Vec<u8>)>,
    /// The raw header bytes (v2), kept for HMAC verification.
    raw: Vec<u8>,
}

/// Decode a PROXY v1 or v2 header at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if buf.is_empty() {
        return Ok(Decoded::Incomplete);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return decode_v2(buf);
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return decode_v1(buf);
    }
    Err(DecodeError::NotProxy)
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if buf.len() < 16 {
        return Ok(Decoded::Incomplete);
    }
    let ver_cmd = buf[12];
    let command = match ver_cmd {
        0x20 => Command::Local,
        0x21 => Command::Proxy,
        b => return Err(DecodeError::BadVersion(b)),
    };
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let total = 16 + len;
    if total > MAX_V2_LEN {
        return Err(DecodeError::TooLong(total));
    }
    if buf.len() < total {
        return Ok(Decoded::Incomplete);
    }
    let body = &buf[16..total];
    let (addrs, addr_len) = match fam {
        0x00 => (None, 0),
        0x11 | 0x12 => {
            if body.len() < 12 {
                return Err(DecodeError::ShortAddresses);
            }
            let ip = |o: usize| Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                Some((
                    SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                    SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
                )),
                12,
            )
        }
        0x21 | 0x22 => {
            if body.len() < 36 {
                return Err(DecodeError::ShortAddresses);
            }
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                Ipv6Addr::from(a)
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                Some((
                    SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                    SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
                )),
                36,
            )
        }
        0x31 | 0x32 => {
            if body.len() < 216 {
                return Err(DecodeError::ShortAddresses);
            }
            (None, 216)
        }
        b => return Err(DecodeError::BadFamily(b)),
    };
    let tlvs = parse_tlvs(&body[addr_len..], 16 + addr_len)?;
    let addrs = if command == Command::Local {
        None
    } else {
        addrs
    };
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V2,
            command,
            addrs,
            tlvs,
            raw: buf[..total].to_vec(),
        },
        len: total,
    })
}

fn parse_tlvs(mut b: &[u8], mut offset: usize) -> Result<Vec<(u8, Vec<u8>)>, DecodeError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 3 {
            return Err(DecodeError::BadTlv(offset));
        }
        let ty = b[0];
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        if b.len() < 3 + len {
            return Err(DecodeError::BadTlv(offset));
        }
        out.push((ty, b[3..3 + len].to_vec()));
        b = &b[3 + len..];
        offset += 3 + len;
    }
    Ok(out)
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_V1_LEN {
            return Err(DecodeError::TooLong(buf.len()));
        }
        return Ok(Decoded::Incomplete);
    };
    let len = end + 2;
    if len > MAX_V1_LEN {
        return Err(DecodeError::TooLong(len));
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| DecodeError::BadV1("not ASCII"))?;
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    let fam = parts.next().ok_or(DecodeError::BadV1("no family"))?;
    let addrs = match fam {
        "UNKNOWN" => None,
        "TCP4" | "TCP6" => {
            let mut next = || parts.next().ok_or(DecodeError::BadV1("missing field"));
            let sip: IpAddr = next()?
                .parse()
                .map_err(|_| DecodeError::BadV1("bad source address"))?;
            let dip: IpAddr = next()?
                .parse()
                .map_err(|_| DecodeError::BadV1("bad destination address"))?;
            let sp: u16 = next()?
                .parse()
                .map_err(|_| DecodeError::BadV1("bad source port"))?;
            let dp: u16 = next()?
                .parse()
                .map_err(|_| DecodeError::BadV1("bad destination port"))?;
            if (fam == "TCP4") != (sip.is_ipv4() && dip.is_ipv4()) {
                return Err(DecodeError::BadV1("address family mismatch"));
            }
            if parts.next().is_some() {
                return Err(DecodeError::BadV1("trailing fields"));
            }
            Some((SocketAddr::new(sip, sp), SocketAddr::new(dip, dp)))
        }
        _ => return Err(DecodeError::BadV1("unknown family")),
    };
    Ok(Decoded::Complete {
        header: Header {
            version: Version::V1,
            command: Command::Proxy,
            addrs,
            tlvs: Vec::new(),
            raw: Vec::new(),
        },
        len,
    })
}

impl Header {
    /// The first TLV of type `ty`.
    pub fn tlv(&self, ty: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v.as_slice())
    }

    pub fn alpn(&self) -> Option<&[u8]> {
        self.tlv(PP2_TYPE_ALPN)
    }

    pub fn authority(&self) -> Option<&str> {
        self.tlv(PP2_TYPE_AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// `PP2_TYPE_SSL` decoded.
    pub fn ssl(&self) -> Option<SslTlv> {
        let v = self.tlv(PP2_TYPE_SSL)?;
        if v.len() < 5 {
            return None;
        }
        Some(SslTlv {
            client: v[0],
            verify: u32::from_be_bytes([v[1], v[2], v[3], v[4]]),
            subs: parse_tlvs(&v[5..], 0).ok()?,
        })
    }

    /// The identity TLVs, if all required ones are present and well formed.
    pub fn identity(&self) -> Option<IdentityTlvs> {
        let s = |ty| {
            self.tlv(ty)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let fp: [u8; 32] = self.tlv(FD_TYPE_KEY_FINGERPRINT)?.try_into().ok()?;
        let flags = self
            .tlv(FD_TYPE_FLAGS)
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        Some(IdentityTlvs {
            account: s(FD_TYPE_ACCOUNT)?,
            login: s(FD_TYPE_LOGIN)?,
            key_name: s(FD_TYPE_KEY_NAME).unwrap_or_default(),
            fingerprint: fp,
            no_imap_preauth: flags & FD_FLAG_NO_IMAP_PREAUTH != 0,
        })
    }

    /// [`FD_TYPE_TIMESTAMP`]: milliseconds since the epoch, if present and
    /// exactly 8 bytes. Trust it only after [`Header::verify_hmac`].
    pub fn timestamp_ms(&self) -> Option<u64> {
        let v: [u8; 8] = self.tlv(FD_TYPE_TIMESTAMP)?.try_into().ok()?;
        Some(u64::from_be_bytes(v))
    }

    /// The HMAC tag, if the last TLV is one (for a replay cache).
    pub fn hmac_tag(&self) -> Option<&[u8]> {
        match self.tlvs.last() {
            Some((FD_TYPE_HMAC, tag)) if tag.len() == HMAC_LEN => Some(tag),
            _ => None,
        }
    }

    /// Check the HMAC TLV with `secret`. False when absent, not last, or wrong.
    pub fn verify_hmac(&self, secret: &[u8]) -> bool {
        let Some((ty, tag)) = self.tlvs.last() else {
            return false;
        };
        if *ty != FD_TYPE_HMAC || tag.len() != HMAC_LEN || self.raw.len() < 16 + 3 + HMAC_LEN {
            return false;
        }
        let mut zeroed = self.raw.clone();
        let n = zeroed.len();
        zeroed[n - HMAC_LEN..].fill(0);
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => return false,
        };
        mac.update(&zeroed);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ConnInfo {
        ConnInfo {
            src: "192.0.2.1:40000".parse().unwrap(),
            dst: "127.0.0.1:8443".parse().unwrap(),
            alpn: Some(b"imap".to_vec()),
            authority: Some("mail.example.org".into()),
            unique_id: Some(b"c1".to_vec()),
            ssl: None,
            identity: None,
        }
    }

    #[test]
    fn v2_exact_bytes_ipv4() {
        let mut i = info();
        i.authority = None;
        i.unique_id = None;
        let b = encode_v2(&i, None);
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 12 + 7]);
        want.extend_from_slice(&[192, 0, 2, 1, 127, 0, 0, 1]);
        want.extend_from_slice(&40000u16.to_be_bytes());
        want.extend_from_slice(&8443u16.to_be_bytes());
        want.extend_from_slice(&[0x01, 0x00, 0x04]);
        want.extend_from_slice(b"imap");
        assert_eq!(b, want);
    }

    #[test]
    fn v1_exact_line_and_roundtrip() {
        let i = info();
        assert_eq!(
            encode_v1(i.src, i.dst),
            b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 8443\r\n".to_vec()
        );
        let src: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        let line = encode_v1(src, i.dst);
        assert_eq!(
            line,
            b"PROXY TCP6 2001:db8::1 ::ffff:127.0.0.1 5 8443\r\n".to_vec()
        );
        match decode(&line).unwrap() {
            Decoded::Complete { header, len } => {
                assert_eq!(len, line.len());
                assert_eq!(header.addrs.unwrap().0, src);
            }
            Decoded::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn v2_roundtrip_with_identity_and_hmac() {
        let mut i = info();
        i.ssl = Some(SslInfo {
            client_cert: true,
            verified: true,
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            sig_alg: None,
            key_alg: None,
            cn: Some("alice@example.org".into()),
            resumed: false,
        });
        i.identity = Some(IdentityTlvs {
            account: "alice@example.org".into(),
            login: "alice@example.org".into(),
            key_name: "alice-phone".into(),
            fingerprint: [7; 32],
            no_imap_preauth: true,
        });
        let b = encode_v2_at(&i, Some(b"secret"), 1_700_000_000_123);
        let mut with_payload = b.clone();
        with_payload.extend_from_slice(b"a001 CAPABILITY\r\n");
        let Decoded::Complete { header, len } = decode(&with_payload).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(len, b.len());
        assert_eq!(header.identity(), i.identity);
        assert!(header.verify_hmac(b"secret"));
        assert!(!header.verify_hmac(b"other"));
        let ssl = header.ssl().unwrap();
        assert_eq!(ssl.client, PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN);
        assert_eq!(ssl.verify, 0);
        assert_eq!(ssl.sub(PP2_SUBTYPE_SSL_CN), Some(&b"alice@example.org"[..]));
        // The timestamp is the TLV before the HMAC, which covers it.
        assert_eq!(header.timestamp_ms(), Some(1_700_000_000_123));
        let n = header.tlvs.len();
        assert_eq!(header.tlvs[n - 2].0, FD_TYPE_TIMESTAMP);
        let mut later = b.clone();
        let at = b.len() - 32 - 3 - 1;
        later[at] ^= 1;
        let Decoded::Complete { header: h2, .. } = decode(&later).unwrap() else {
            panic!("incomplete")
        };
        assert_ne!(h2.timestamp_ms(), header.timestamp_ms());
        assert!(
            !h2.verify_hmac(b"secret"),
            "a changed timestamp breaks the MAC"
        );
        // A resumed session's certificate is the session's, not this connection's.
        i.ssl.as_mut().unwrap().resumed = true;
        let r = encode_v2(&i, None);
        let Decoded::Complete { header: h3, .. } = decode(&r).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(
            h3.ssl().unwrap().client,
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS
        );
        // Every prefix is Incomplete, never an error.
        for k in 0..b.len() {
            assert_eq!(decode(&b[..k]).unwrap(), Decoded::Incomplete, "prefix {k}");
        }
    }

    #[test]
    fn tampered_hmac_fails() {
        let mut i = info();
        i.identity = Some(IdentityTlvs {
            account: "a".into(),
            login: "a@x".into(),
            key_name: String::new(),
            fingerprint: [1; 32],
            no_imap_preauth: false,
        });
        let mut b = encode_v2(&i, Some(b"k"));
        let pos = b.windows(3).position(|w| w == b"a@x").unwrap();
        b[pos] = b'b';
        let Decoded::Complete { header, .. } = decode(&b).unwrap() else {
            panic!()
        };
        assert!(!header.verify_hmac(b"k"));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(DecodeError::NotProxy));
        assert!(decode(b"PROXY TCP4 1.2.3.4\r\n").is_err());
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(decode(&big), Err(DecodeError::TooLong(16 + 0xffff)));
        assert!(decode(&[b'P'; 200][..]).is_err());
    }
}
