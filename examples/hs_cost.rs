//! The floor of a TLS 1.3 handshake on this machine, for `benches/run.sh`:
//! what the server side of one full handshake costs in crypto alone, with
//! the provider frontdoor uses (ring), and what rustls' server state
//! machine costs around it without sockets.
//!
//! - `crypto_us`: one X25519 key pair generated and agreed, one ECDSA P-256
//!   signature (the server's CertificateVerify), the same primitives a full
//!   handshake with the benchmark's certificate and group needs.
//! - `server_us`: one full handshake between rustls client and server in
//!   memory, timed on the server's calls only (no socket, no kernel).
//! - `resumed_us`: the same for a resumed handshake (a ticket, PSK with
//!   X25519), whose crypto floor is `x25519_us` (no signature).
//! - `x25519_us`, `sign_us`: the two parts of `crypto_us`.
//!
//! ```text
//! hs_cost --iters 2000 [--tickets N] [--stateful]
//! ```
//! prints `crypto_us=… server_us=… resumed_us=…` (medians of the iterations).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

type Error = Box<dyn std::error::Error>;

#[derive(Debug)]
struct AnyServer(Vec<rustls::SignatureScheme>);
impl ServerCertVerifier for AnyServer {
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
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.clone()
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// Bytes from one side to the other until neither has anything to say.
fn pump(
    c: &mut ClientConnection,
    s: &mut ServerConnection,
    server_time: &mut Duration,
) -> Result<(), Error> {
    let mut buf = Vec::new();
    for _ in 0..16 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf)?;
        }
        let t = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
            s.process_new_packets()?;
        }
        let mut out = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut out)?;
        }
        *server_time += t.elapsed();
        let mut rd = &out[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
            c.process_new_packets()?;
        }
        if buf.is_empty() && out.is_empty() && !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err("handshake did not finish".into())
}

fn main() -> Result<(), Error> {
    let mut iters = 2000usize;
    let mut tickets = 2usize;
    let mut stateful = false;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iters" => iters = args.next().ok_or("--iters N")?.parse()?,
            // What a server sends after each handshake (rustls' default: 2).
            "--tickets" => tickets = args.next().ok_or("--tickets N")?.parse()?,
            // Sessions kept by the server (an id in the ticket) instead of
            // sealed into the ticket.
            "--stateful" => stateful = true,
            // One kind of handshake only (for instruction counts).
            "--only" => only = Some(args.next().ok_or("--only full|resumed")?),
            _ => return Err(format!("unknown argument {a:?}").into()),
        }
    }
    let iters = iters.clamp(10, 1_000_000);
    use rustls::crypto::ring as p;

    // Server: an ECDSA P-256 certificate, as benches/run.sh makes.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(Arc::new(p::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)?;
    if stateful {
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(iters * 4);
    } else {
        server.ticketer = p::Ticketer::new()?;
    }
    server.send_tls13_tickets = tickets.max(1);
    let server = Arc::new(server);

    let mut provider = p::default_provider();
    provider.kx_groups = vec![p::kx_group::X25519];
    provider.cipher_suites = vec![p::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let client = |resume: bool| -> Result<Arc<ClientConfig>, Error> {
        let mut c = ClientConfig::builder_with_provider(Arc::new(provider.clone()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(schemes.clone())))
            .with_no_client_auth();
        if !resume {
            c.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(c))
    };
    let full = client(false)?;
    let resuming = client(true)?;
    let name = ServerName::try_from("localhost")?;

    // The primitives alone.
    let rng = SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
            .map_err(|e| format!("P-256 key: {e}"))?;
    let peer = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| "x25519")?;
    let peer_pub = peer.compute_public_key().map_err(|_| "x25519")?;
    let transcript = [0x42u8; 130];
    let (mut kx, mut sign) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
    for _ in 0..iters {
        let t = Instant::now();
        let mine = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| "x25519")?;
        let _public = mine.compute_public_key().map_err(|_| "x25519")?;
        agree_ephemeral(
            mine,
            &UnparsedPublicKey::new(&X25519, peer_pub.as_ref()),
            |k| std::hint::black_box(k.len()),
        )
        .map_err(|_| "x25519 agree")?;
        let t2 = Instant::now();
        let sig = signer.sign(&rng, &transcript).map_err(|_| "sign")?;
        std::hint::black_box(sig.as_ref().len());
        kx.push(t2 - t);
        sign.push(t2.elapsed());
    }
    let crypto: Vec<Duration> = kx.iter().zip(&sign).map(|(a, b)| *a + *b).collect();

    let once = |cfg: &Arc<ClientConfig>| -> Result<(Duration, bool), Error> {
        let mut c = ClientConnection::new(cfg.clone(), name.clone())?;
        let mut s = ServerConnection::new(server.clone())?;
        let mut t = Duration::ZERO;
        pump(&mut c, &mut s, &mut t)?;
        Ok((
            t,
            c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        ))
    };
    let (full_n, res_n) = match only.as_deref() {
        Some("full") => (iters, 1),
        Some("resumed") => (1, iters),
        _ => (iters, iters),
    };
    let mut full_t = Vec::with_capacity(iters);
    for _ in 0..full_n {
        full_t.push(once(&full)?.0);
    }
    once(&resuming)?; // the first ticket
    let mut res_t = Vec::with_capacity(iters);
    for _ in 0..res_n {
        let (t, resumed) = once(&resuming)?;
        if !resumed {
            return Err("a handshake that should have resumed did not".into());
        }
        res_t.push(t);
    }
    println!(
        "mode=hs_cost n={iters} crypto_us={:.1} x25519_us={:.1} sign_us={:.1} server_us={:.1} resumed_us={:.1}",
        median(crypto),
        median(kx),
        median(sign),
        median(full_t),
        median(res_t)
    );
    Ok(())
}
