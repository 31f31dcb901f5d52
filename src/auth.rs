//! Client authentication by pinned key, as the front door runs it: the
//! registry in force, the handshake-time policy, the identity derived after
//! every handshake, revocation of open connections, and throttling of
//! clients whose keys fail.
//!
//! Invariants:
//! - the identity comes from `identify` after the handshake (full or
//!   resumed), looked up in the registry in force at that moment: a resumed
//!   session never carries a key removed since its first handshake;
//! - only the SubjectPublicKeyInfo counts; the certificate's own names are
//!   never read;
//! - a client address (IPv4, or IPv6 /64: `throttle::AddrKey`) with repeated
//!   key failures waits before its next handshakes, and past a hard limit is
//!   turned away, for a while; the failure table is bounded and keeps
//!   counting when full (`throttle::FailureTable`).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;

use crate::config::{ClientAuth, UnknownKey};
use crate::diagnostics::{Problem, Problems};
use crate::registry::{check_key_acceptable, fingerprint_spki, Fingerprint, RegistryHandle};
use crate::throttle::{AddrKey, FailureTable};
use crate::tls::client_key::{spki_of, KeyPolicy, KeyRefusal, PinnedKeyVerifier};

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
    /// No certificate presented.
    Absent,
    Pinned(Arc<Identity>),
    /// A key not in the registry (canonical fingerprint).
    Unknown(String),
}

/// Failures after which an IP's handshakes are slowed (mox slows after 3).
const SLOW_AFTER: u32 = 3;
/// Failures after which an IP is turned away until its level drops.
const BLOCK_AFTER: u32 = 30;
/// One failure is forgotten per interval: a blocked address drains fully
/// in ten minutes, and once blocked gets one try per interval.
const LEAK: Duration = Duration::from_secs(20);
/// Highest level an address reaches: blocked for at most ten minutes
/// (`(MAX_LEVEL - BLOCK_AFTER) * LEAK`) after its last failure.
const MAX_LEVEL: u32 = 2 * BLOCK_AFTER;
/// Longest delay imposed before a handshake.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Bound on remembered addresses, so a spray of addresses cannot grow memory.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug)]
struct HandshakePolicy {
    registry: RegistryHandle,
    unknown_key: UnknownKey,
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryHandle({})", self.path().display())
    }
}

impl KeyPolicy for HandshakePolicy {
    fn check(&self, spki: &[u8]) -> Result<(), KeyRefusal> {
        let fp = fingerprint_spki(spki);
        if let Err(e) = check_key_acceptable(spki) {
            tracing::warn!(fingerprint = %fp, error = %e, "client key refused: not an acceptable key type or size");
            return Err(KeyRefusal::Unacceptable(e));
        }
        if self.registry.current().lookup(&fp).is_some() {
            return Ok(());
        }
        match self.unknown_key {
            UnknownKey::Anonymous => Ok(()),
            UnknownKey::Reject => {
                tracing::warn!(fingerprint = %fp, "client key not in the registry: handshake refused (add it with `frontdoor keys add`)");
                Err(KeyRefusal::Unknown(fp))
            }
        }
    }
}

pub struct Auth {
    registry: RegistryHandle,
    unknown_key: UnknownKey,
    secret: Option<Arc<[u8]>>,
    policy: Arc<HandshakePolicy>,
    failures: Mutex<FailureTable<AddrKey>>,
    _watcher: tokio::task::JoinHandle<()>,
}

/// Why client authentication could not start. The operator's to fix: the
/// registry or the identity secret as configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The registry file is missing or invalid (every problem, with its line).
    #[error("{0}")]
    Registry(Problems),
    /// The identity secret is missing, too short or readable by others.
    #[error(transparent)]
    Secret(#[from] crate::identity_secret::SecretError),
}

fn read_secret(path: &Path) -> Result<Arc<[u8]>, crate::identity_secret::SecretError> {
    crate::identity_secret::read(path).map(Arc::from)
}

impl Auth {
    /// Validate the registry and secret files (for `frontdoor check`).
    pub fn check(cfg: &ClientAuth) -> Result<(), Problems> {
        let mut problems = Vec::new();
        if let Err(p) = crate::registry::Registry::load(&cfg.registry) {
            problems.extend(p.0);
        }
        if let Some(s) = &cfg.identity_secret {
            if let Err(e) = read_secret(s) {
                problems.push(Problem {
                    file: s.clone(),
                    line: None,
                    message: e.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }

    /// Load the registry (it must be valid) and start watching it.
    /// Must run inside a tokio runtime.
    pub fn open(cfg: &ClientAuth) -> Result<Self, AuthError> {
        let registry = RegistryHandle::open(&cfg.registry).map_err(AuthError::Registry)?;
        let secret = cfg
            .identity_secret
            .as_deref()
            .map(read_secret)
            .transpose()?;
        let watcher = registry.spawn_watcher();
        Ok(Self {
            policy: Arc::new(HandshakePolicy {
                registry: registry.clone(),
                unknown_key: cfg.unknown_key,
            }),
            registry,
            unknown_key: cfg.unknown_key,
            secret,
            failures: Mutex::new(FailureTable::new(MAX_TRACKED, LEAK)),
            _watcher: watcher,
        })
    }

    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// The rustls verifier for a listener.
    pub fn verifier(&self, mandatory: bool) -> Arc<dyn ClientCertVerifier> {
        Arc::new(PinnedKeyVerifier::new(self.policy.clone(), mandatory))
    }

    /// SIGHUP: re-read the registry now (the last good one stays on error).
    pub fn reload(&self) {
        let _ = self.registry.reload();
    }

    /// The identity of a finished handshake, from the certificate rustls kept
    /// for the session and the registry in force now.
    pub fn identify(&self, certs: Option<&[CertificateDer<'static>]>) -> ClientKey {
        let Some(ee) = certs.and_then(|c| c.first()) else {
            return ClientKey::Absent;
        };
        let Some(spki) = spki_of(ee.as_ref()) else {
            return ClientKey::Unknown("(unparseable certificate)".into());
        };
        let fp = fingerprint_spki(&spki);
        match self.registry.current().lookup(&fp) {
            Some(e) if check_key_acceptable(&spki).is_ok() => {
                ClientKey::Pinned(Arc::new(Identity {
                    account: e.account.clone(),
                    login: e.login.clone(),
                    key_name: e.name.clone(),
                    fingerprint: fp.0,
                    imap_preauth: e.imap_preauth,
                }))
            }
            _ => ClientKey::Unknown(fp.to_string()),
        }
    }

    pub fn unknown_key(&self) -> UnknownKey {
        self.unknown_key
    }

    pub fn identity_secret(&self) -> Option<Arc<[u8]>> {
        self.secret.clone()
    }

    /// Resolves once the registry in force no longer says what `id` says:
    /// the key was removed, or its account, login or `imap_preauth` changed.
    /// The connection that carries `id` then ends, as for a removed key;
    /// the next one carries the new identity.
    pub async fn wait_changed(&self, id: &Identity) -> &'static str {
        let fp = Fingerprint(id.fingerprint);
        let mut rx = self.registry.subscribe();
        loop {
            match rx.borrow_and_update().lookup(&fp) {
                None => return "client key removed from the registry",
                Some(e)
                    if e.account != id.account
                        || e.login != id.login
                        || e.imap_preauth != id.imap_preauth =>
                {
                    return "client key's identity changed in the registry";
                }
                Some(_) => {}
            }
            if rx.changed().await.is_err() {
                // The registry is gone (shutdown): nothing will revoke.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Delay (or refuse) a handshake from an address with recent key
    /// failures. Returns false when the address is to be turned away now.
    pub async fn throttle(&self, ip: IpAddr) -> bool {
        let count = {
            let mut f = match self.failures.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f.level(&AddrKey::from(ip), Instant::now())
        };
        if count >= BLOCK_AFTER {
            return false;
        }
        if count >= SLOW_AFTER {
            let d = Duration::from_secs(u64::from(count - SLOW_AFTER + 1)).min(MAX_DELAY);
            tokio::time::sleep(d).await;
        }
        true
    }

    /// Count a failed key authentication for `ip` (its /64 for IPv6).
    pub fn note_failure(&self, ip: IpAddr) {
        let key = AddrKey::from(ip);
        let n = {
            let mut f = match self.failures.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f.add(&key, Instant::now(), MAX_LEVEL)
        };
        if n == SLOW_AFTER {
            tracing::warn!(client = %ip, key = %key, failures = n, "repeated client key failures: slowing down handshakes from this address");
        } else if n == BLOCK_AFTER {
            tracing::warn!(client = %ip, key = %key, failures = n, "client key failure limit reached: refusing handshakes from this address for a while");
        }
    }

    /// A failed handshake: count it when the client's certificate was refused.
    pub fn note_handshake_error(&self, ip: IpAddr, e: &std::io::Error) {
        let cert_refused = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|r| {
                matches!(
                    r,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            });
        if cert_refused {
            self.note_failure(ip);
        }
    }
}
