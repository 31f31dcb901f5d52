//! Client authentication by pinned key: the registry in force, the
//! handshake-time policy, the post-handshake identity, throttling.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;

use crate::config::{ClientAuth, UnknownKey};

/// A pinned key's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub login: String,
    pub key_name: String,
    pub fingerprint: [u8; 32],
    pub imap_preauth: bool,
}

/// What the client's certificate amounts to.
#[derive(Debug, Clone)]
pub enum ClientKey {
    Absent,
    Pinned(Arc<Identity>),
    /// Canonical fingerprint of a key not in the registry.
    Unknown(String),
}

pub struct Auth {
    unknown_key: UnknownKey,
}

impl Auth {
    pub fn check(_cfg: &ClientAuth) -> Result<(), crate::config::Problems> {
        Ok(())
    }
    pub fn open(_cfg: &ClientAuth) -> Result<Self, String> {
        Err("client_auth is not available in this build".into())
    }
    pub fn verifier(&self, _mandatory: bool) -> Arc<dyn ClientCertVerifier> {
        unreachable!()
    }
    pub fn reload(&self) {}
    pub fn identify(&self, _certs: Option<&[CertificateDer<'static>]>) -> ClientKey {
        ClientKey::Absent
    }
    pub fn unknown_key(&self) -> UnknownKey {
        self.unknown_key
    }
    pub fn identity_secret(&self) -> Option<Arc<[u8]>> {
        None
    }
    pub async fn throttle(&self, _ip: IpAddr) {}
    pub fn note_handshake_error(&self, _ip: IpAddr, _e: &std::io::Error) {}
    pub fn note_failure(&self, _ip: IpAddr) {}
    pub async fn wait_revoked(&self, _fp: [u8; 32]) {
        std::future::pending().await
    }
}
