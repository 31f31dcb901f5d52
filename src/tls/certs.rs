//! Server certificates: loading PEM pairs, choosing one by SNI, hot reload.
//!
//! Names come from each certificate's subjectAltName DNS entries (x509-parser);
//! the first configured pair is the default for clients that send no SNI or
//! an unknown name. A reload builds a whole new `CertStore` and swaps it in
//! only if every pair loaded and matched its key, so a bad new certificate
//! never replaces a good one; handshakes in flight keep the `Arc` they took.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertPaths;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCert { path: PathBuf },
    #[error("{path}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: malformed PEM: {source}")]
    Pem {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unsupported private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key}: this private key does not match the certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: cannot parse certificate: {source}")]
    Parse {
        path: PathBuf,
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("no certificates configured")]
    Empty,
    #[error("{path}: refusing a world-writable file (anyone could replace it): chmod o-w {path}")]
    WorldWritable { path: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Facts about a loaded certificate that travel in `PP2_TYPE_SSL`.
#[derive(Debug, Clone)]
pub struct CertMeta {
    /// DNS names from subjectAltName (lower case; may start with `*.`).
    pub names: Vec<String>,
    /// e.g. `ECDSA-SHA256`, `RSA-SHA256`, `ED25519`.
    pub sig_alg: String,
    /// e.g. `EC256`, `RSA2048`, `ED25519`.
    pub key_alg: String,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
}

#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub meta: CertMeta,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o002 != 0 {
            return Err(CertError::WorldWritable {
                path: path.to_owned(),
            });
        }
    }
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Load a certificate chain and its key, checking that they belong together.
pub fn load_pair(p: &CertPaths) -> Result<LoadedCert, CertError> {
    let cert_pem = read(&p.cert)?;
    let key_pem = read(&p.key)?;
    from_pem(&cert_pem, &key_pem, &p.cert, &p.key)
}

/// Build a `LoadedCert` from PEM text; paths only name the sources in errors.
pub fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::Pem {
            path: cert_path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert {
            path: cert_path.to_owned(),
        });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| CertError::Pem {
            path: key_path.to_owned(),
            source,
        })?
        .ok_or_else(|| CertError::NoKey {
            path: key_path.to_owned(),
        })?;
    let signing = any_supported_type(&key).map_err(|e| CertError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let meta = cert_meta(&chain[0]).map_err(|source| CertError::Parse {
        path: cert_path.to_owned(),
        source,
    })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| CertError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    })?;
    Ok(LoadedCert {
        key: Arc::new(ck),
        meta,
    })
}

fn cert_meta(
    der: &CertificateDer<'_>,
) -> Result<CertMeta, x509_parser::nom::Err<x509_parser::error::X509Error>> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let oid = |o: &x509_parser::der_parser::oid::Oid| o.to_id_string();
    let sig_alg = match oid(&cert.signature_algorithm.algorithm).as_str() {
        "1.2.840.10045.4.3.2" => "ECDSA-SHA256",
        "1.2.840.10045.4.3.3" => "ECDSA-SHA384",
        "1.2.840.113549.1.1.11" => "RSA-SHA256",
        "1.2.840.113549.1.1.12" => "RSA-SHA384",
        "1.2.840.113549.1.1.13" => "RSA-SHA512",
        "1.2.840.113549.1.1.10" => "RSA-PSS",
        "1.3.101.112" => "ED25519",
        _ => "UNKNOWN",
    }
    .to_owned();
    let key_alg = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA{}", r.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(e)) => format!("EC{}", e.key_size()),
        _ if oid(&cert.public_key().algorithm.algorithm) == "1.3.101.112" => "ED25519".to_owned(),
        _ => "UNKNOWN".to_owned(),
    };
    Ok(CertMeta {
        names,
        sig_alg,
        key_alg,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A self-signed certificate for `names`, as (cert PEM, key PEM).
pub fn self_signed(names: &[String]) -> Result<(String, String), CertError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

/// All loaded certificates, indexed by name.
#[derive(Debug)]
pub struct CertStore {
    certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl CertStore {
    pub fn new(certs: Vec<LoadedCert>) -> Result<Self, CertError> {
        if certs.is_empty() {
            return Err(CertError::Empty);
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in &c.meta.names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        Ok(Self {
            certs,
            exact,
            wildcard,
        })
    }

    pub fn load(paths: &[CertPaths]) -> Result<Self, Vec<CertError>> {
        let mut certs = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match load_pair(p) {
                Ok(c) => certs.push(c),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Self::new(certs).map_err(|e| vec![e])
    }

    /// The certificate for `sni`: exact name, then one-label wildcard, then the default.
    pub fn pick(&self, sni: Option<&str>) -> &LoadedCert {
        let idx = sni
            .map(str::to_ascii_lowercase)
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    let (_, parent) = name.split_once('.')?;
                    self.wildcard.get(parent).copied()
                })
            })
            .unwrap_or(0);
        &self.certs[idx]
    }

    pub fn certs(&self) -> &[LoadedCert] {
        &self.certs
    }

    pub fn into_certs(self) -> Vec<LoadedCert> {
        self.certs
    }
}

/// The ALPN protocol of ACME's tls-alpn-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Where the served certificates come from: the configured files (reloaded
/// on SIGHUP) and the ones ACME keeps current. Files come first: they win a
/// name both cover, and the first file is the default.
#[derive(Debug, Default)]
struct Parts {
    files: Vec<LoadedCert>,
    managed: Vec<LoadedCert>,
}

/// rustls resolver over a swappable `CertStore`, plus the tls-alpn-01
/// challenge certificates of ACME orders in progress.
#[derive(Debug)]
pub struct SniResolver {
    store: RwLock<Arc<CertStore>>,
    parts: Mutex<Parts>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn new(store: CertStore) -> Self {
        let files = store.certs.clone();
        Self {
            store: RwLock::new(Arc::new(store)),
            parts: Mutex::new(Parts {
                files,
                managed: Vec::new(),
            }),
            challenges: RwLock::new(HashMap::new()),
        }
    }

    /// Certificates from files plus ACME-managed ones (at least one in all).
    pub fn with_managed(
        files: Vec<LoadedCert>,
        managed: Vec<LoadedCert>,
    ) -> Result<Self, CertError> {
        let store = CertStore::new(files.iter().chain(&managed).cloned().collect())?;
        Ok(Self {
            store: RwLock::new(Arc::new(store)),
            parts: Mutex::new(Parts { files, managed }),
            challenges: RwLock::new(HashMap::new()),
        })
    }

    pub fn current(&self) -> Arc<CertStore> {
        match self.store.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// New certificates from files (SIGHUP); ACME-managed ones stay.
    pub fn replace(&self, store: CertStore) {
        let mut parts = lock(&self.parts);
        parts.files = store.into_certs();
        self.rebuild(&parts);
    }

    /// New ACME-managed certificates; those from files stay. Handshakes in
    /// flight and open connections keep what they had.
    pub fn set_managed(&self, certs: Vec<LoadedCert>) {
        let mut parts = lock(&self.parts);
        parts.managed = certs;
        self.rebuild(&parts);
    }

    fn rebuild(&self, parts: &Parts) {
        let all: Vec<LoadedCert> = parts.files.iter().chain(&parts.managed).cloned().collect();
        // Empty only if both parts are, which no caller does; keep the old store then.
        if let Ok(store) = CertStore::new(all) {
            let new = Arc::new(store);
            match self.store.write() {
                Ok(mut g) => *g = new,
                Err(p) => *p.into_inner() = new,
            }
        }
    }

    /// Answer tls-alpn-01 validation handshakes for `domain` with `cert`.
    pub fn set_challenge(&self, domain: &str, cert: Arc<CertifiedKey>) {
        let mut map = match self.challenges.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.insert(domain.to_ascii_lowercase(), cert);
    }

    pub fn clear_challenge(&self, domain: &str) {
        let mut map = match self.challenges.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.remove(&domain.to_ascii_lowercase());
    }

    fn challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        let map = match self.challenges.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(&domain.to_ascii_lowercase()).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if hello
            .alpn()
            .is_some_and(|mut a| a.any(|p| p == ACME_TLS_ALPN))
        {
            // A CA validating a name (RFC 8737): only a pending challenge
            // answers; without one the handshake fails.
            return self.challenge(hello.server_name()?);
        }
        Some(self.current().pick(hello.server_name()).key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> LoadedCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let (c, k) = self_signed(&names).unwrap();
        from_pem(c.as_bytes(), k.as_bytes(), Path::new("c"), Path::new("k")).unwrap()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let store = CertStore::new(vec![
            pair(&["default.test"]),
            pair(&["imap.example.org"]),
            pair(&["*.example.net"]),
        ])
        .unwrap();
        assert_eq!(
            store.pick(Some("IMAP.example.org")).meta.names,
            ["imap.example.org"]
        );
        assert_eq!(
            store.pick(Some("a.example.net")).meta.names,
            ["*.example.net"]
        );
        assert_eq!(
            store.pick(Some("a.b.example.net")).meta.names,
            ["default.test"]
        );
        assert_eq!(store.pick(None).meta.names, ["default.test"]);
        assert_eq!(store.pick(Some("x")).meta.key_alg, "EC256");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (c1, _) = self_signed(&["a.test".into()]).unwrap();
        let (_, k2) = self_signed(&["b.test".into()]).unwrap();
        let e = from_pem(
            c1.as_bytes(),
            k2.as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "k.pem: this private key does not match the certificate c.pem"
        );
    }
}
