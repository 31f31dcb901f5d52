//! A minimal, pure ClientHello reader: the SNI name and the offered ALPN
//! values, for deciding whether a connection is passed through untouched
//! before any TLS is terminated (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301).
//!
//! It reads handshake bytes gathered from one or more TLS records, never
//! more than `MAX_HELLO` bytes, and answers `NeedMore` until the whole
//! ClientHello is there. Anything malformed is `Err`: the caller then lets
//! rustls answer the client as it would.
//!
//! The SNI is checked as rustls checks it on the terminated path
//! ([`server_name`]): a DNS name (kept, lower case), an IP address
//! (ignored, as if absent), anything else — not UTF-8, a control character,
//! a space, a second host_name — is `Err`, which rustls then refuses with
//! `illegal_parameter`. So a name that reaches a log line, a route lookup or
//! a PROXY header is a DNS name on both paths.

/// Largest ClientHello accepted for inspection (handshake body bytes).
pub const MAX_HELLO: usize = 16 * 1024;

/// Most bytes a connection may have sent before its ClientHello is complete:
/// a `MAX_HELLO` body, its 4-byte header and record headers for a hello cut
/// into up to 200 records. Browsers and mail apps send 0.5 to 2 KiB (8 KiB
/// with post-quantum key shares); rustls itself would buffer up to 64 KiB,
/// which hundreds of half-sent hellos turn into tens of MiB.
pub const MAX_HELLO_BYTES: usize = MAX_HELLO + 4 + 200 * 5;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    NeedMore,
    Hello(Hello),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a TLS ClientHello: {0}")]
pub struct NotHello(pub &'static str);

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NotHello> {
        if self.0.len() < n {
            return Err(NotHello("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<usize, NotHello> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, NotHello> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Result<&'a [u8], NotHello> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], NotHello> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Inspect the start of a TLS stream.
pub fn peek(stream: &[u8]) -> Result<Peeked, NotHello> {
    // Gather handshake bytes across records.
    let mut hs = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < 5 {
            break;
        }
        if rest[0] != 0x16 {
            return Err(NotHello("first record is not a handshake"));
        }
        if rest[1] != 0x03 {
            return Err(NotHello("record version"));
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > 16 * 1024 + 256 {
            return Err(NotHello("record length"));
        }
        if rest.len() < 5 + len {
            hs.extend_from_slice(&rest[5..]);
            break;
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if hs.len() >= 4 {
            check_header(&hs)?;
            let need = 4 + (((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize);
            if hs.len() >= need {
                break;
            }
        }
    }
    if stream.first().is_some_and(|b| *b != 0x16) {
        return Err(NotHello("first record is not a handshake"));
    }
    if hs.len() < 4 {
        return Ok(Peeked::NeedMore);
    }
    check_header(&hs)?;
    let body_len = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
    if hs.len() < 4 + body_len {
        return Ok(Peeked::NeedMore);
    }
    parse_body(&hs[4..4 + body_len]).map(Peeked::Hello)
}

fn check_header(hs: &[u8]) -> Result<(), NotHello> {
    if hs[0] != 0x01 {
        return Err(NotHello("handshake is not a ClientHello"));
    }
    let body_len = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
    if body_len > MAX_HELLO {
        return Err(NotHello("ClientHello too large"));
    }
    Ok(())
}

fn parse_body(b: &[u8]) -> Result<Hello, NotHello> {
    let mut r = R(b);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let mut hello = Hello::default();
    if r.0.is_empty() {
        return Ok(hello);
    }
    let mut exts = R(r.vec16()?);
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let mut data = R(exts.vec16()?);
        match ty {
            0 => {
                let mut list = R(data.vec16()?);
                let mut seen = false;
                while !list.0.is_empty() {
                    if list.u8()? != 0 {
                        // An unknown name type: its encoding is unknown
                        // too, so nothing after it can be read (as rustls).
                        break;
                    }
                    if std::mem::replace(&mut seen, true) {
                        return Err(NotHello("more than one host_name in the SNI"));
                    }
                    hello.sni = server_name(list.vec16()?)?;
                }
            }
            16 => {
                let mut list = R(data.vec16()?);
                while !list.0.is_empty() {
                    let p = list.vec8()?;
                    if p.is_empty() {
                        return Err(NotHello("empty ALPN value"));
                    }
                    hello.alpn.push(p.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The SNI host_name as rustls takes it (RFC 6066 §3): a DNS name, lower
/// case; `None` for an IP address (some clients send one; rustls ignores
/// it); `Err` for anything else, which rustls refuses.
pub fn server_name(raw: &[u8]) -> Result<Option<String>, NotHello> {
    use rustls::pki_types::ServerName;
    match ServerName::try_from(raw) {
        Ok(ServerName::DnsName(d)) => Ok(Some(d.as_ref().to_ascii_lowercase())),
        Ok(ServerName::IpAddress(_)) => Ok(None),
        Ok(_) | Err(_) => Err(NotHello("server name is not a DNS name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rustls_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut c =
            rustls::ClientConnection::new(Arc::new(cfg), sni.to_string().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        c.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_and_alpn_and_needs_more_until_complete() {
        let h = rustls_hello("WWW.Example.org", &["h2", "http/1.1"]);
        for k in 0..h.len() {
            assert_eq!(peek(&h[..k]), Ok(Peeked::NeedMore), "prefix {k}");
        }
        let want = Hello {
            sni: Some("www.example.org".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        assert_eq!(peek(&h), Ok(Peeked::Hello(want.clone())));
        // Split across two records.
        let body = &h[5..];
        let (a, b) = body.split_at(40);
        let mut two = vec![0x16, 0x03, 0x01, 0, a.len() as u8];
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 0x03, 0x01, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend_from_slice(b);
        assert_eq!(peek(&two), Ok(Peeked::Hello(want)));
    }

    /// `rustls_hello("placeholder.example", …)` with its SNI replaced by
    /// `name` (same length, so no length field changes).
    fn hello_with_sni(name: &[u8]) -> Vec<u8> {
        let placeholder = vec![b'p'; name.len()];
        let mut h = rustls_hello(std::str::from_utf8(&placeholder).unwrap(), &[]);
        let at = h
            .windows(name.len())
            .position(|w| w == &placeholder[..])
            .unwrap();
        h[at..at + name.len()].copy_from_slice(name);
        h
    }

    #[test]
    fn sni_must_be_a_dns_name_as_rustls_requires() {
        let sni = |name: &[u8]| match peek(&hello_with_sni(name)) {
            Ok(Peeked::Hello(h)) => Ok(h.sni),
            Ok(Peeked::NeedMore) => panic!("complete hello"),
            Err(e) => Err(e),
        };
        assert_eq!(
            sni(b"Mail.Example.ORG"),
            Ok(Some("mail.example.org".into()))
        );
        assert_eq!(
            sni(b"xn--bcher-kva.example"),
            Ok(Some("xn--bcher-kva.example".into()))
        );
        assert_eq!(sni(b"_dmarc.example"), Ok(Some("_dmarc.example".into())));
        let bad = NotHello("server name is not a DNS name");
        for name in [
            &b"a.example\nFORGED connection closed"[..],
            b"a.example\r\nX",
            b"a.example\0",
            b"a example",
            b"a.example\x1b[2J",
            "bücher.example".as_bytes(),
            b"a.example\xff",
            b"-a.example",
        ] {
            assert_eq!(sni(name), Err(bad.clone()), "{name:?}");
        }
        // An IP address is ignored, as rustls does.
        assert_eq!(sni(b"192.0.2.7"), Ok(None));
    }

    #[test]
    fn garbage_is_not_a_hello() {
        assert!(peek(b"GET / HTTP/1.1\r\n").is_err());
        assert!(peek(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]).is_err());
        assert!(peek(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]).is_err());
    }
}
