//! Certificates by ACME (RFC 8555), proved with the tls-alpn-01 challenge
//! (RFC 8737) on frontdoor's own listeners: the port it owns is the port the
//! CA checks, so no web server and no DNS API is involved.
//!
//! State lives in `tls.acme.state_dir`: `account.json` (the account key, for
//! one directory URL), `cert.pem` (the chain) and `key.pem`, all mode 0600,
//! each replaced by an atomic rename so a crash never leaves half a file.
//!
//! Invariants: the served certificate only changes by a whole swap in the
//! resolver (handshakes in flight and open connections keep theirs); a
//! failed order never replaces a working certificate; a challenge
//! certificate is only served while its order is being validated, and only
//! to handshakes that offer the `acme-tls/1` ALPN; such a connection is
//! closed after the handshake, never routed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Acme;
use crate::metrics::ResultLabel;
use crate::tls::certs::{self, CertError, CertMeta, LoadedCert};
use crate::tls::SniResolver;

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unreadable ACME account: {reason}")]
    Account { path: PathBuf, reason: String },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("cannot build a certificate or request: {0}")]
    Generate(String),
    #[error("the CA offers no tls-alpn-01 challenge for {0}")]
    NoChallenge(String),
    #[error("authorization for {domain} is {status:?}")]
    Authorization {
        domain: String,
        status: AuthorizationStatus,
    },
    #[error("order is {status:?} after validation: {detail}")]
    Order { status: OrderStatus, detail: String },
}

const ACCOUNT_FILE: &str = "account.json";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// How often a certificate that is not yet due is looked at again.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// First wait after a failed order; doubles up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// How long the CA may take to validate and to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Does `cert` need replacing: missing, not covering every domain, or
/// within `renew_before` of its notAfter at `now`?
pub fn renewal_due(
    cert: Option<&CertMeta>,
    domains: &[String],
    now: i64,
    renew_before: Duration,
) -> bool {
    let Some(m) = cert else { return true };
    let covers = domains.iter().all(|d| m.names.iter().any(|n| n == d));
    let left = m.not_after.saturating_sub(now);
    !covers || left <= renew_before.as_secs() as i64
}

/// When to look again after a successful check: when renewal falls due, but
/// at least once per `CHECK_EVERY` and not sooner than a minute.
pub fn next_check(meta: &CertMeta, now: i64, renew_before: Duration) -> Duration {
    let due_in = meta
        .not_after
        .saturating_sub(renew_before.as_secs() as i64)
        .saturating_sub(now);
    Duration::from_secs(due_in.clamp(60, CHECK_EVERY.as_secs() as i64) as u64)
}

/// The certificate kept in `state_dir`, if there is a usable one.
pub fn stored(cfg: &Acme) -> Option<LoadedCert> {
    let cert = cfg.state_dir.join(CERT_FILE);
    let key = cfg.state_dir.join(KEY_FILE);
    if !cert.exists() {
        return None;
    }
    match certs::load_pair(&crate::config::CertPaths { cert, key }) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "stored ACME certificate unusable; a new one will be ordered");
            None
        }
    }
}

/// What to serve for the ACME domains at start: the stored certificate, or
/// a self-signed stand-in until the first order completes.
pub fn initial(cfg: &Acme) -> Result<Vec<LoadedCert>, CertError> {
    if let Some(c) = stored(cfg) {
        return Ok(vec![c]);
    }
    tracing::warn!(
        domains = %cfg.domains.join(","),
        "no ACME certificate yet: serving a self-signed stand-in until the CA issues one"
    );
    let (c, k) = certs::self_signed(&cfg.domains)?;
    Ok(vec![certs::from_pem(
        c.as_bytes(),
        k.as_bytes(),
        Path::new("generated"),
        Path::new("generated"),
    )?])
}

/// Keep the ACME certificate current until `shutdown`; count each finished
/// order in `orders` by result.
pub async fn run(
    cfg: Acme,
    resolver: Arc<SniResolver>,
    orders: Family<ResultLabel, Counter>,
    shutdown: CancellationToken,
) {
    let mut current = stored(&cfg).map(|c| c.meta);
    let mut retry = RETRY_FIRST;
    loop {
        let wait = if renewal_due(current.as_ref(), &cfg.domains, now_secs(), cfg.renew_before) {
            tracing::info!(domains = %cfg.domains.join(","), directory = %cfg.directory, "ordering a certificate by ACME (tls-alpn-01)");
            let order = order(&cfg, &resolver);
            let result = tokio::select! {
                r = order => r,
                _ = shutdown.cancelled() => return,
            };
            match result {
                Ok(cert) => {
                    orders.get_or_create(&ResultLabel { result: "ok" }).inc();
                    retry = RETRY_FIRST;
                    tracing::info!(
                        domains = %cert.meta.names.join(","),
                        not_after = cert.meta.not_after,
                        "ACME certificate issued and now served"
                    );
                    let meta = cert.meta.clone();
                    resolver.set_managed(vec![cert]);
                    let wait = next_check(&meta, now_secs(), cfg.renew_before);
                    current = Some(meta);
                    wait
                }
                Err(e) => {
                    orders
                        .get_or_create(&ResultLabel { result: "failed" })
                        .inc();
                    tracing::error!(error = %e, retry_in_secs = retry.as_secs(), "ACME order failed; keeping the current certificate");
                    let wait = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    wait
                }
            }
        } else {
            match &current {
                Some(m) => next_check(m, now_secs(), cfg.renew_before),
                None => RETRY_FIRST,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One order, start to finish: account, authorizations, challenges, CSR,
/// certificate, files. The certificate is returned only once stored.
async fn order(cfg: &Acme, resolver: &SniResolver) -> Result<LoadedCert, AcmeError> {
    let account = account(cfg).await?;
    let ids: Vec<Identifier> = cfg.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut challenges = ChallengeGuard {
        resolver,
        domains: Vec::new(),
    };
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a?;
            let domain = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => return Err(AcmeError::Authorization { domain, status }),
            }
            let mut ch = a
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::NoChallenge(domain.clone()))?;
            let cert = challenge_cert(&domain, ch.key_authorization().digest().as_ref())?;
            challenges.add(&domain, cert);
            tracing::info!(domain = %domain, "answering tls-alpn-01 for this name");
            ch.set_ready().await?;
        }
    }
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT);
    let status = order.poll_ready(&policy).await?;
    drop(challenges);
    if status != OrderStatus::Ready {
        let detail = match &order.state().error {
            Some(p) => p.to_string(),
            None => "the CA could not validate every name (see its authorizations)".into(),
        };
        return Err(AcmeError::Order { status, detail });
    }
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(cfg.domains.clone())
        .map_err(|e| AcmeError::Generate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Generate(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&policy).await?;
    let key_pem = key.serialize_pem();
    let loaded = certs::from_pem(
        chain.as_bytes(),
        key_pem.as_bytes(),
        &cfg.state_dir.join(CERT_FILE),
        &cfg.state_dir.join(KEY_FILE),
    )?;
    ensure_dir(&cfg.state_dir)?;
    // Key first: a crash in between leaves the old pair unreadable as a pair
    // (mismatch) and a new order follows, never a certificate with a wrong key.
    write_private(&cfg.state_dir.join(KEY_FILE), key_pem.as_bytes())?;
    write_private(&cfg.state_dir.join(CERT_FILE), chain.as_bytes())?;
    Ok(loaded)
}

/// Removes the challenge certificates when the order ends, however it ends.
struct ChallengeGuard<'a> {
    resolver: &'a SniResolver,
    domains: Vec<String>,
}

impl ChallengeGuard<'_> {
    fn add(&mut self, domain: &str, cert: Arc<CertifiedKey>) {
        self.resolver.set_challenge(domain, cert);
        self.domains.push(domain.to_owned());
    }
}

impl Drop for ChallengeGuard<'_> {
    fn drop(&mut self) {
        for d in &self.domains {
            self.resolver.clear_challenge(d);
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `domain` carrying the SHA-256
/// of the key authorization in the critical acmeIdentifier extension.
pub fn challenge_cert(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .map_err(|e| AcmeError::Generate(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::Generate(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = any_supported_type(&key_der).map_err(|e| AcmeError::Generate(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

/// The stored account for this directory, or a new one (then stored).
async fn account(cfg: &Acme) -> Result<Account, AcmeError> {
    let builder = || match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let path = cfg.state_dir.join(ACCOUNT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: StoredAccount =
                serde_json::from_slice(&bytes).map_err(|e| AcmeError::Account {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if stored.directory == cfg.directory {
                return Ok(builder()?.from_credentials(stored.credentials).await?);
            }
            tracing::info!(old = %stored.directory, new = %cfg.directory, "ACME directory changed: registering a new account");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(AcmeError::Io { path, source }),
    }
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await?;
    ensure_dir(&cfg.state_dir)?;
    let json = serde_json::to_vec_pretty(&StoredAccount {
        directory: cfg.directory.clone(),
        credentials,
    })
    .map_err(|e| AcmeError::Account {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_private(&path, &json)?;
    tracing::info!(id = %account.id(), "ACME account registered");
    Ok(account)
}

fn ensure_dir(dir: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AcmeError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Write `bytes` to `path` (mode 0600) by a synced temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| AcmeError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(names: &[&str], not_after: i64) -> CertMeta {
        CertMeta {
            names: names.iter().map(|s| s.to_string()).collect(),
            sig_alg: String::new(),
            key_alg: String::new(),
            not_after,
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn renewal_is_due_when_missing_short_or_not_covering() {
        let domains = vec!["mail.example.org".to_string(), "example.org".to_string()];
        let rb = Duration::from_secs(30 * DAY as u64);
        let now = 1_000_000_000;
        assert!(renewal_due(None, &domains, now, rb));
        let good = meta(&["example.org", "mail.example.org"], now + 60 * DAY);
        assert!(!renewal_due(Some(&good), &domains, now, rb));
        let short = meta(&["example.org", "mail.example.org"], now + 29 * DAY);
        assert!(renewal_due(Some(&short), &domains, now, rb));
        let expired = meta(&["example.org", "mail.example.org"], now - DAY);
        assert!(renewal_due(Some(&expired), &domains, now, rb));
        let partial = meta(&["mail.example.org"], now + 60 * DAY);
        assert!(renewal_due(Some(&partial), &domains, now, rb));
    }

    #[test]
    fn next_check_is_when_due_within_bounds() {
        let rb = Duration::from_secs(30 * DAY as u64);
        let now = 1_000_000_000;
        // Due in 2 hours: look then.
        let m = meta(&["a.example"], now + 30 * DAY + 7200);
        assert_eq!(next_check(&m, now, rb), Duration::from_secs(7200));
        // Due in 60 days: still look twice a day.
        let m = meta(&["a.example"], now + 90 * DAY);
        assert_eq!(next_check(&m, now, rb), CHECK_EVERY);
        // Already due (renew_before longer than the lifetime): not in a loop.
        let m = meta(&["a.example"], now + DAY);
        assert_eq!(next_check(&m, now, rb), Duration::from_secs(60));
    }

    #[test]
    fn challenge_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [7u8; 32];
        let ck = challenge_cert("mail.example.org", &digest).unwrap();
        let der = ck.cert[0].as_ref();
        let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
        let ext = x
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // OCTET STRING (0x04), length 32, the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let san = x.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[DNSName(\"mail.example.org\")]"
        );
    }
}
