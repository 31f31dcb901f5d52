//! TLS 1.3 connections set up in memory for the record-layer targets and
//! the differential test: a rustls client (whose traffic secrets are taken
//! from its key log, so that records are sealed and opened by code of our
//! own, independent of both record layers under test) and a rustls server,
//! buffered or unbuffered, with nothing between them but byte vectors.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
};

/// The TLS 1.3 suites `record13` protects.
pub const SUITES: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client's key log: where its traffic secrets come from.
#[derive(Debug, Default)]
pub struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for Secrets {
    fn log(&self, label: &str, _: &[u8], secret: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            v.push((label.to_string(), secret.to_vec()));
        }
    }
    fn will_log(&self, _: &str) -> bool {
        true
    }
}

impl Secrets {
    pub fn get(&self, label: &str) -> Vec<u8> {
        let v = self.0.lock().expect("key log");
        v.iter()
            .find(|(l, _)| l == label)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no {label} logged"))
    }
}

/// Server configurations (one certificate for all), TLS 1.3 only unless
/// `tls12`; no session tickets, so that the first record after the
/// handshake is the client's and sequence numbers start at 0.
pub fn server_config(tls12: bool) -> Arc<ServerConfig> {
    static CFG: OnceLock<[Arc<ServerConfig>; 2]> = OnceLock::new();
    CFG.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["fuzz.invalid".into()]).expect("cert");
        let cert = CertificateDer::from(ck.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let make = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            let mut c = ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .expect("server config");
            c.send_tls13_tickets = 0;
            c.enable_secret_extraction = true;
            Arc::new(c)
        };
        [
            make(&[&rustls::version::TLS13]),
            make(&[&rustls::version::TLS13, &rustls::version::TLS12]),
        ]
    })[usize::from(tls12)]
    .clone()
}

/// A client offering only `suite` (a TLS 1.2 suite makes it a TLS 1.2
/// client), logging its secrets into `log`.
pub fn client_config(suite: rustls::CipherSuite, log: Arc<Secrets>) -> Arc<ClientConfig> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| s.suite() == suite);
    let tls12 = p.cipher_suites.iter().any(|s| s.tls13().is_none());
    let version: &[&'static rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut c = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(version)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    c.key_log = log;
    c.enable_early_data = false;
    Arc::new(c)
}

pub fn new_client(suite: rustls::CipherSuite) -> (ClientConnection, Arc<Secrets>) {
    let log = Arc::new(Secrets::default());
    let name = ServerName::try_from("fuzz.invalid").expect("name");
    let c = ClientConnection::new(client_config(suite, log.clone()), name).expect("client");
    (c, log)
}

/// Move what `from` wants to send into `to`.
fn client_out(c: &mut ClientConnection, to: &mut Vec<u8>) {
    while c.wants_write() {
        c.write_tls(to).expect("client write_tls");
    }
}

fn client_in(c: &mut ClientConnection, bytes: &mut Vec<u8>) {
    let mut r = &bytes[..];
    while !r.is_empty() {
        c.read_tls(&mut r).expect("client read_tls");
        c.process_new_packets().expect("client handshake");
    }
    bytes.clear();
}

/// Run an unbuffered server over `incoming` until it needs more bytes or
/// its handshake is done; what it sends is appended to `out`.
pub fn drive_unbuffered(
    s: &mut UnbufferedServerConnection,
    incoming: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    for _ in 0..64 {
        let UnbufferedStatus { discard, state } = s.process_tls_records(incoming);
        let stop = match state.expect("server handshake") {
            ConnectionState::EncodeTlsData(mut e) => {
                let need = match e.encode(&mut []) {
                    Err(EncodeError::InsufficientSize(n)) => n.required_size,
                    other => panic!("encode: {other:?}"),
                };
                let at = out.len();
                out.resize(at + need, 0);
                let n = e.encode(&mut out[at..]).expect("encode");
                out.truncate(at + n);
                false
            }
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                false
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => true,
            _ => panic!("unexpected server state during the handshake"),
        };
        incoming.drain(..discard);
        if stop {
            return;
        }
    }
    panic!("unbuffered server did not settle");
}

/// A finished handshake between a fresh client and an unbuffered server.
pub fn pair_unbuffered(
    suite: rustls::CipherSuite,
) -> (ClientConnection, Arc<Secrets>, UnbufferedServerConnection) {
    let (mut c, log) = new_client(suite);
    let mut s = UnbufferedServerConnection::new(server_config(false)).expect("server");
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        client_out(&mut c, &mut up);
        drive_unbuffered(&mut s, &mut up, &mut down);
        client_in(&mut c, &mut down);
        if !c.is_handshaking() && !c.wants_write() && !s.is_handshaking() {
            break;
        }
    }
    assert!(!s.is_handshaking() && !c.is_handshaking() && up.is_empty());
    (c, log, s)
}

/// A finished handshake between a fresh client and a buffered server.
pub fn pair_buffered(
    suite: rustls::CipherSuite,
) -> (ClientConnection, Arc<Secrets>, ServerConnection) {
    let (mut c, log) = new_client(suite);
    let mut s = ServerConnection::new(server_config(false)).expect("server");
    for _ in 0..8 {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        client_out(&mut c, &mut up);
        let mut r = &up[..];
        while !r.is_empty() {
            s.read_tls(&mut r).expect("server read_tls");
            s.process_new_packets().expect("server handshake");
        }
        while s.wants_write() {
            s.write_tls(&mut down).expect("server write_tls");
        }
        client_in(&mut c, &mut down);
        if !c.is_handshaking() && !c.wants_write() && !s.is_handshaking() {
            break;
        }
    }
    assert!(!s.is_handshaking() && !c.is_handshaking());
    let mut sink = [0u8; 1];
    assert!(s.reader().read(&mut sink).is_err(), "no data yet");
    (c, log, s)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let mut info = Vec::new();
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(6 + label.len() as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let info = [&info[..]];
    let okm = prk.expand(&info, Len(len)).expect("hkdf");
    let mut out = vec![0; len];
    okm.fill(&mut out).expect("hkdf fill");
    out
}

/// One direction of a TLS 1.3 connection as the test's own code sees it:
/// the traffic secret, the key and IV derived from it, the sequence number.
pub struct Dir {
    hkdf: hkdf::Algorithm,
    aead: &'static aead::Algorithm,
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Dir {
    pub fn new(suite: rustls::CipherSuite, secret: Vec<u8>) -> Dir {
        use rustls::CipherSuite as C;
        let (hkdf, aead) = match suite {
            C::TLS13_AES_128_GCM_SHA256 => (hkdf::HKDF_SHA256, &aead::AES_128_GCM),
            C::TLS13_AES_256_GCM_SHA384 => (hkdf::HKDF_SHA384, &aead::AES_256_GCM),
            C::TLS13_CHACHA20_POLY1305_SHA256 => (hkdf::HKDF_SHA256, &aead::CHACHA20_POLY1305),
            s => panic!("not a TLS 1.3 suite: {s:?}"),
        };
        Dir::with(hkdf, aead, secret)
    }

    /// After a KeyUpdate (RFC 8446 §7.2).
    pub fn update(&mut self) {
        let len = self.hkdf.hmac_algorithm().digest_algorithm().output_len();
        let next = expand_label(self.hkdf, &self.secret, b"traffic upd", len);
        *self = Dir::with(self.hkdf, self.aead, next);
    }

    fn with(hkdf: hkdf::Algorithm, aead: &'static aead::Algorithm, secret: Vec<u8>) -> Dir {
        let key = expand_label(hkdf, &secret, b"key", aead.key_len());
        let iv: [u8; 12] = expand_label(hkdf, &secret, b"iv", 12)
            .try_into()
            .expect("iv");
        Dir {
            hkdf,
            aead,
            key: LessSafeKey::new(UnboundKey::new(aead, &key).expect("key")),
            iv,
            seq: 0,
            secret,
        }
    }

    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (d, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *d ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }

    /// Seal `inner` (TLSInnerPlaintext: content, type, padding) under
    /// `header` (whose length field the caller chose) and append it.
    pub fn seal(&mut self, header: [u8; 5], inner: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(inner);
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[at + 5..])
            .expect("seal");
        out.extend_from_slice(tag.as_ref());
    }

    /// Open one record body; `None` if it does not authenticate.
    pub fn open(&mut self, header: [u8; 5], body: &mut [u8]) -> Option<Vec<u8>> {
        let nonce = self.nonce();
        self.key
            .open_in_place(nonce, Aad::from(header), body)
            .ok()
            .map(|p| p.to_vec())
    }
}

/// What a server sent after the handshake, as its client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Data(Vec<u8>),
    KeyUpdate(u8),
    Alert(u8, u8),
    Other(u8, Vec<u8>),
    Undecryptable,
}

/// Open every record the server sent, following its KeyUpdates; adjacent
/// data records are merged (record sizes are the sender's choice).
pub fn read_server(rx: &mut Dir, bytes: &[u8], events: &mut Vec<Event>) {
    let mut b = bytes;
    while b.len() >= 5 {
        let header: [u8; 5] = b[..5].try_into().expect("header");
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        assert!(b.len() >= 5 + len, "server sent a partial record");
        assert_eq!(header[0], 23, "server sent an unprotected record");
        let mut body = b[5..5 + len].to_vec();
        b = &b[5 + len..];
        let Some(mut inner) = rx.open(header, &mut body) else {
            events.push(Event::Undecryptable);
            return;
        };
        while inner.last() == Some(&0) {
            inner.pop();
        }
        let typ = inner.pop().expect("server record without a content type");
        match (typ, &inner[..]) {
            (23, d) => match events.last_mut() {
                Some(Event::Data(v)) => v.extend_from_slice(d),
                _ => events.push(Event::Data(d.to_vec())),
            },
            (22, [24, 0, 0, 1, r]) => {
                events.push(Event::KeyUpdate(*r));
                rx.update();
            }
            (21, [l, d]) => events.push(Event::Alert(*l, *d)),
            (t, d) => events.push(Event::Other(t, d.to_vec())),
        }
    }
    assert!(b.is_empty(), "server sent a partial record header");
}

/// Read all the plaintext a buffered connection holds; true at its EOF.
pub fn read_plain(r: &mut impl Read, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) => panic!("reading plaintext: {e}"),
        }
    }
}

/// Write everything a buffered connection wants to send.
pub fn write_all_tls(c: &mut ServerConnection, out: &mut Vec<u8>) {
    while c.wants_write() {
        if c.write_tls(out as &mut dyn Write).is_err() {
            break;
        }
    }
}
