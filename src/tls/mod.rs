//! TLS for the front door: server configs per listener, certificates by SNI,
//! and the pinned-key client verifier.
//!
//! Invariants: TLS 1.2 and 1.3 only (ring provider); each listener offers
//! exactly the ALPN values of the routes it can reach, mail protocols first,
//! so rustls answers a client whose offer has no overlap with the fatal
//! `no_application_protocol` alert.

pub mod certs;
pub mod client_hello;
pub mod client_key;

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;

pub use certs::{CertStore, SniResolver};

/// TLS 1.2 sessions remembered by id per listener (TLS 1.3, and TLS 1.2
/// clients that take tickets, resume with a ticket instead). A resumed
/// session skips the certificate verifier, so the connection code re-checks
/// the key.
const SESSION_CACHE: usize = 4096;

pub fn server_config(
    resolver: Arc<SniResolver>,
    alpn: Vec<Vec<u8>>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn;
    cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    // Stateless tickets: the session travels, sealed, in the client's
    // ticket, so the server keeps nothing per session however many clients
    // resume (docs/performance.md, "Resumption"). ring's ticketer seals
    // with ChaCha20-Poly1305 under a random key that it replaces every 6 hours,
    // still opening tickets of the key before: a ticket lives at most 12
    // hours, and a key is never written anywhere.
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    // TLS 1.3 records after the handshake are protected by
    // frontdoor::record13, with the keys rustls hands over.
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

/// `TLSv1.3`-style name as HAProxy writes it in `PP2_SUBTYPE_SSL_VERSION`.
pub fn version_name(v: Option<rustls::ProtocolVersion>) -> String {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
        Some(o) => format!("{o:?}"),
        None => String::new(),
    }
}
