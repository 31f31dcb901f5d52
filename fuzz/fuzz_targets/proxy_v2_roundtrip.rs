//! PROXY headers as the front door writes them (`proxy_protocol::encode_v2_at`,
//! which `encode_v2` calls with the clock, and `encode_v1`), built from fuzzed connection facts, decoded by our own
//! decoder and by the independent `ppp` crate: both must read back exactly
//! the addresses and TLVs that went in, the identity must survive, and the
//! HMAC must verify with its secret and only with it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use frontdoor::proxy_protocol::{
    self as pp, decode, encode_v1, encode_v2_at, Command, ConnInfo, Decoded, IdentityTlvs, SslInfo,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn addr(u: &mut Unstructured<'_>) -> Result<SocketAddr> {
    let ip = if u.arbitrary()? {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?))
    };
    Ok(SocketAddr::new(ip, u.arbitrary()?))
}

fn bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=max)?;
    Ok(u.bytes(n.min(u.len()))?.to_vec())
}

fn text(u: &mut Unstructured<'_>, max: usize) -> Result<String> {
    Ok(String::from_utf8_lossy(&bytes(u, max)?).into_owned())
}

fn opt<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary()? { Some(f(u)?) } else { None })
}

fn info(u: &mut Unstructured<'_>) -> Result<ConnInfo> {
    Ok(ConnInfo {
        src: addr(u)?,
        dst: addr(u)?,
        alpn: opt(u, |u| bytes(u, 255))?,
        authority: opt(u, |u| text(u, 255))?,
        unique_id: opt(u, |u| bytes(u, 200))?,
        ssl: opt(u, |u| {
            Ok(SslInfo {
                client_cert: u.arbitrary()?,
                resumed: u.arbitrary()?,
                verified: u.arbitrary()?,
                version: text(u, 16)?,
                cipher: text(u, 64)?,
                sig_alg: opt(u, |u| text(u, 32))?,
                key_alg: opt(u, |u| text(u, 32))?,
                cn: opt(u, |u| text(u, 255))?,
            })
        })?,
        identity: opt(u, |u| {
            Ok(IdentityTlvs {
                account: text(u, 255)?,
                login: text(u, 255)?,
                key_name: text(u, 255)?,
                fingerprint: u.arbitrary()?,
                no_imap_preauth: u.arbitrary()?,
            })
        })?,
    })
}

/// Both addresses in one family: IPv4 stays, a mixed pair goes to IPv6.
fn expected_addrs(i: &ConnInfo) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if i.src.is_ipv4() == i.dst.is_ipv4() {
        (i.src, i.dst)
    } else {
        (v6(i.src), v6(i.dst))
    }
}

/// The TLVs the encoder must have written, in order.
fn expected_tlvs(i: &ConnInfo, now_ms: u64, hmac: Option<&[u8]>) -> Vec<(u8, Vec<u8>)> {
    let mut t = Vec::new();
    if let Some(a) = &i.alpn {
        t.push((pp::PP2_TYPE_ALPN, a.clone()));
    }
    if let Some(a) = &i.authority {
        t.push((pp::PP2_TYPE_AUTHORITY, a.as_bytes().to_vec()));
    }
    if let Some(id) = &i.unique_id {
        t.push((pp::PP2_TYPE_UNIQUE_ID, id[..id.len().min(128)].to_vec()));
    }
    if let Some(s) = &i.ssl {
        let cert = match (s.client_cert, s.resumed) {
            (false, _) => 0,
            (true, false) => pp::PP2_CLIENT_CERT_CONN,
            (true, true) => pp::PP2_CLIENT_CERT_SESS,
        };
        let mut v = vec![pp::PP2_CLIENT_SSL | cert];
        v.extend_from_slice(&u32::from(!s.verified).to_be_bytes());
        let mut sub = |ty: u8, val: &[u8]| {
            v.push(ty);
            v.extend_from_slice(&(val.len() as u16).to_be_bytes());
            v.extend_from_slice(val);
        };
        sub(pp::PP2_SUBTYPE_SSL_VERSION, s.version.as_bytes());
        if let (true, Some(cn)) = (s.verified, &s.cn) {
            sub(pp::PP2_SUBTYPE_SSL_CN, cn.as_bytes());
        }
        sub(pp::PP2_SUBTYPE_SSL_CIPHER, s.cipher.as_bytes());
        if let Some(x) = &s.sig_alg {
            sub(pp::PP2_SUBTYPE_SSL_SIG_ALG, x.as_bytes());
        }
        if let Some(x) = &s.key_alg {
            sub(pp::PP2_SUBTYPE_SSL_KEY_ALG, x.as_bytes());
        }
        t.push((pp::PP2_TYPE_SSL, v));
    }
    if let Some(id) = &i.identity {
        t.push((pp::FD_TYPE_ACCOUNT, id.account.as_bytes().to_vec()));
        t.push((pp::FD_TYPE_LOGIN, id.login.as_bytes().to_vec()));
        t.push((pp::FD_TYPE_KEY_FINGERPRINT, id.fingerprint.to_vec()));
        t.push((pp::FD_TYPE_FLAGS, vec![u8::from(id.no_imap_preauth)]));
        t.push((pp::FD_TYPE_KEY_NAME, id.key_name.as_bytes().to_vec()));
    }
    if let Some(tag) = hmac {
        t.push((pp::FD_TYPE_TIMESTAMP, now_ms.to_be_bytes().to_vec()));
        t.push((pp::FD_TYPE_HMAC, tag.to_vec()));
    }
    t
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let info = info(u)?;
    let secret = opt(u, |u| bytes(u, 64))?;
    let trailing = bytes(u, 32)?;
    let now_ms: u64 = u.arbitrary()?;
    let wire = encode_v2_at(&info, secret.as_deref(), now_ms);
    let (src, dst) = expected_addrs(&info);

    // Our decoder, with the client's first bytes behind the header.
    let mut stream = wire.clone();
    stream.extend_from_slice(&trailing);
    let hmac = secret.as_ref().map(|_| &wire[wire.len() - 32..]);
    let tlvs = expected_tlvs(&info, now_ms, hmac);
    if wire.len() > pp::MAX_V2_LEN {
        // Long values (nothing bounds a registry's login, account or key
        // name) make a header our decoder refuses as too long; it must say
        // so, and the bytes must still be a well-formed header.
        assert_eq!(decode(&stream), Err(pp::DecodeError::TooLong(wire.len())));
        let theirs = ppp::v2::Header::try_from(&stream[..]).expect("ppp refused our header");
        assert_eq!(theirs.len(), wire.len());
        return Ok(());
    }
    let Ok(Decoded::Complete { header, len }) = decode(&stream) else {
        panic!("our decoder refused our header: {:?}", decode(&stream));
    };
    assert_eq!(len, wire.len());
    assert_eq!(header.command, Command::Proxy);
    assert_eq!(header.addrs, Some((src, dst)));
    assert_eq!(header.tlvs, tlvs);
    assert_eq!(header.identity(), info.identity);
    match &secret {
        Some(s) => {
            assert!(
                header.verify_hmac(s),
                "HMAC does not verify with its secret"
            );
            let mut other = s.clone();
            other.push(1);
            assert!(
                !header.verify_hmac(&other),
                "HMAC verifies with another secret"
            );
        }
        None => assert!(!header.verify_hmac(b"any")),
    }
    if let Some(s) = &info.ssl {
        let got = header.ssl().expect("SSL TLV");
        assert_eq!(got.verify == 0, s.verified);
        assert_eq!(
            got.sub(pp::PP2_SUBTYPE_SSL_CN).is_some(),
            s.verified && s.cn.is_some()
        );
    }

    // The independent decoder.
    let theirs = ppp::v2::Header::try_from(&stream[..]).expect("ppp refused our header");
    assert_eq!(theirs.len(), wire.len());
    assert_eq!(theirs.command, ppp::v2::Command::Proxy);
    assert_eq!(theirs.protocol, ppp::v2::Protocol::Stream);
    match theirs.addresses {
        ppp::v2::Addresses::IPv4(a) => assert_eq!(
            (src, dst),
            (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port)
            )
        ),
        ppp::v2::Addresses::IPv6(a) => assert_eq!(
            (src, dst),
            (
                SocketAddr::new(a.source_address.into(), a.source_port),
                SocketAddr::new(a.destination_address.into(), a.destination_port)
            )
        ),
        other => panic!("ppp read addresses {other:?}"),
    }
    let their_tlvs: Vec<(u8, Vec<u8>)> = theirs
        .tlvs()
        .map(|t| t.map(|t| (t.kind, t.value.to_vec())))
        .collect::<std::result::Result<_, _>>()
        .expect("ppp refused a TLV");
    assert_eq!(their_tlvs, tlvs);

    // PROXY v1 the same way.
    let line = encode_v1(info.src, info.dst);
    let Ok(Decoded::Complete { header, len }) = decode(&line) else {
        panic!("our decoder refused our v1 line");
    };
    assert_eq!((len, header.addrs), (line.len(), Some((src, dst))));
    let text = std::str::from_utf8(&line).expect("v1 is ASCII");
    let theirs = ppp::v1::Header::try_from(text).expect("ppp refused our v1 line");
    let got = match theirs.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        ppp::v1::Addresses::Unknown => panic!("ppp read UNKNOWN"),
    };
    assert_eq!(got, (src, dst));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
