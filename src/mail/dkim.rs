//! DKIM (RFC 6376) for the bundled backend: the inbound MX's verification
//! in chatmail mode ([`Verifier`]) and the signing of mail that local
//! accounts send out ([`Signer`], keys in the data dir).
//!
//! Verification follows the chatmail rule (filtermail, and OpenDKIM with
//! chatmail's screen/final scripts before it): a message is accepted when
//! at least one `DKIM-Signature` whose `d=` is the `From:` domain (strict
//! alignment, DMARC `adkim=s`) verifies; otherwise it is refused with a
//! reply saying why ("No DKIM signature found", "DKIM signature is invalid:
//! ..."). A DNS failure is temporary (`451`). Accepted mail gets an
//! `Authentication-Results:` header (RFC 8601 §2.7.1) with the passing
//! results.
//!
//! Bounds: the header section must end within [`MAX_HEADER_BYTES`], at most
//! [`MAX_SIGNATURES`] signatures are looked at, each DNS query has
//! [`DNS_TIMEOUT`] per attempt and the whole check [`VERIFY_TIMEOUT`].
//! The message size is bounded by `mail.max_message_size` before this runs.
//!
//! Signing: an ed25519 key and an RSA-2048 key, generated on first start
//! into `<data_dir>/dkim/` (mode 0600) and kept; each message gets both
//! signatures (relaxed/relaxed), for the domain of its `From:` address when
//! it is a local domain. Rotation: [`keys`] keeps several pairs, one per
//! selector, and names the active one; [`active`] is the running server's
//! signer, which follows a switch without a restart.

pub mod active;
pub mod keys;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::hickory_resolver::config::{
    NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimResult, MessageAuthenticator};

/// The header section must end within this many bytes (RFC 5322 sets no
/// limit; this keeps parsing of hostile input bounded).
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Most `DKIM-Signature` fields looked at; more refuse the message.
pub const MAX_SIGNATURES: usize = 8;
/// Per DNS attempt.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole verification, every key lookup included.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// The selector when `mail.dkim.selector` is not set.
pub use crate::mail::config::DEFAULT_DKIM_SELECTOR as DEFAULT_SELECTOR;

/// Header fields signed (RFC 6376 §5.4.1), as OpenDKIM's defaults plus
/// `Autocrypt` and `Content-Type`, as chatmail relays sign them.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Autocrypt",
    "Chat-Version",
];

/// Why DKIM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("DKIM key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DKIM key {path}: {why}")]
    BadKey { path: PathBuf, why: String },
    #[error("DKIM resolver: {0}")]
    Resolver(String),
    #[error("DKIM key generation failed: {0}")]
    Generate(String),
}

/// The reply for a message the check refuses (or defers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub text: String,
}

fn refuse(code: u16, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
    }
}

/// Printable ASCII only, at most 200 bytes: error texts go into replies.
fn reply_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(200)
        .collect()
}

/// The inbound check and its resolver.
pub struct Verifier {
    auth: MessageAuthenticator,
    /// `authserv-id` of the Authentication-Results header (RFC 8601 §2.5).
    authserv_id: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("authserv_id", &self.authserv_id)
            .finish_non_exhaustive()
    }
}

/// Resolver options: short deadlines, no hosts file.
fn resolver_opts(mut o: ResolverOpts) -> ResolverOpts {
    o.timeout = DNS_TIMEOUT;
    o.attempts = 2;
    o
}

/// The DNS configuration of the bundled backend (`mail.dns.resolvers`,
/// `ip:port`, UDP then TCP; the system's when the list is empty), shared by
/// the DKIM checks and the delivery worker's MX lookups. A system without a
/// usable resolver configuration gets one whose lookups fail, logged here.
/// Configured resolvers are asked for every name (no hosts file).
pub fn resolver_config(resolvers: &[SocketAddr]) -> (ResolverConfig, ResolverOpts) {
    if resolvers.is_empty() {
        match mail_auth::hickory_resolver::system_conf::read_system_conf() {
            Ok((c, o)) => (c, resolver_opts(o)),
            Err(e) => {
                tracing::warn!("no system resolver configuration ({e}); DNS lookups will fail until mail.dns.resolvers is set");
                (
                    ResolverConfig::from_parts(None, vec![], Vec::<NameServerConfig>::new()),
                    resolver_opts(ResolverOpts::default()),
                )
            }
        }
    } else {
        let servers: Vec<NameServerConfig> = resolvers
            .iter()
            .flat_map(|a| {
                [
                    NameServerConfig::new(*a, ProtocolConfig::Udp),
                    NameServerConfig::new(*a, ProtocolConfig::Tcp),
                ]
            })
            .collect();
        // Configured servers are the whole truth: /etc/hosts is not read
        // (the system's resolvers, above, keep the system's habit).
        let mut opts = resolver_opts(ResolverOpts::default());
        opts.use_hosts_file = ResolveHosts::Never;
        (ResolverConfig::from_parts(None, vec![], servers), opts)
    }
}

/// A resolver (in mail-auth's wrapper) asking `resolvers` (`ip:port`, UDP
/// then TCP), or the system's resolvers when the list is empty; without a
/// usable system configuration its lookups fail, logged once here.
pub fn authenticator(resolvers: &[SocketAddr]) -> Result<MessageAuthenticator, DkimError> {
    let (config, opts) = resolver_config(resolvers);
    MessageAuthenticator::new(config, opts).map_err(|e| DkimError::Resolver(e.to_string()))
}

impl Verifier {
    /// A verifier asking `resolvers` (`ip:port`, UDP then TCP), or the
    /// system's resolvers when the list is empty. A system without a usable
    /// resolver configuration gets a verifier whose lookups fail (mail is
    /// then deferred with `451`), logged once here.
    pub fn new(resolvers: &[SocketAddr], authserv_id: &str) -> Result<Verifier, DkimError> {
        let auth = authenticator(resolvers)?;
        Ok(Verifier {
            auth,
            authserv_id: authserv_id.to_owned(),
        })
    }

    /// Check `msg` (the message as received, CRLF line ends). `Ok` holds the
    /// `Authentication-Results:` field to prepend (with its CRLF).
    pub async fn check(&self, msg: &[u8]) -> Result<String, Refusal> {
        match tokio::time::timeout(VERIFY_TIMEOUT, self.check_inner(msg)).await {
            Ok(r) => r,
            Err(_) => Err(refuse(
                451,
                "4.7.5 DKIM verification timed out, try again later",
            )),
        }
    }

    async fn check_inner(&self, msg: &[u8]) -> Result<String, Refusal> {
        let head = &msg[..msg.len().min(MAX_HEADER_BYTES)];
        let ends = head.windows(4).any(|w| w == b"\r\n\r\n");
        if !ends && msg.len() > MAX_HEADER_BYTES {
            return Err(refuse(554, "5.6.0 Header section too large"));
        }
        let Some(parsed) = AuthenticatedMessage::parse(msg) else {
            return Err(refuse(554, "5.7.1 No DKIM signature found"));
        };
        if parsed.dkim_headers.is_empty() {
            return Err(refuse(554, "5.7.1 No DKIM signature found"));
        }
        if parsed.dkim_headers.len() > MAX_SIGNATURES {
            return Err(refuse(
                554,
                format!("5.7.1 Too many DKIM signatures (at most {MAX_SIGNATURES})"),
            ));
        }
        let from = match parsed.from.as_slice() {
            [one] => one.to_ascii_lowercase(),
            _ => return Err(refuse(
                554,
                "5.7.1 No valid DKIM signature found: the message needs exactly one From: address",
            )),
        };
        let from_domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let outputs = self.auth.verify_dkim(&parsed).await;
        let aligned = |o: &&mail_auth::DkimOutput<'_>| {
            o.signature()
                .is_some_and(|s| s.d.eq_ignore_ascii_case(from_domain))
        };
        let passed: Vec<_> = outputs
            .iter()
            .filter(aligned)
            .filter(|o| o.result() == &DkimResult::Pass)
            .cloned()
            .collect();
        if !passed.is_empty() {
            let ar = AuthenticationResults::new(&self.authserv_id)
                .with_dkim_results(&passed, &from)
                .to_header();
            return Ok(ar);
        }
        let why = |r: &DkimResult| match r {
            DkimResult::Neutral(e)
            | DkimResult::Fail(e)
            | DkimResult::PermError(e)
            | DkimResult::TempError(e) => reply_safe(&e.to_string()),
            DkimResult::Pass | DkimResult::None => String::new(),
        };
        let mine: Vec<_> = outputs.iter().filter(aligned).collect();
        if let Some(t) = mine
            .iter()
            .find(|o| matches!(o.result(), DkimResult::TempError(_)))
        {
            return Err(refuse(
                451,
                format!(
                    "4.7.5 DKIM key lookup failed, try again later: {}",
                    why(t.result())
                ),
            ));
        }
        let invalid = |o: &mail_auth::DkimOutput<'_>| {
            refuse(
                554,
                format!("5.7.1 DKIM signature is invalid: {}", why(o.result())),
            )
        };
        if let Some(o) = mine.first() {
            return Err(invalid(o));
        }
        if outputs.iter().any(|o| o.signature().is_some()) {
            return Err(refuse(
                554,
                format!(
                    "5.7.1 No valid DKIM signature found: none is aligned with the From: domain {}",
                    reply_safe(from_domain)
                ),
            ));
        }
        if let Some(o) = outputs.first() {
            return Err(invalid(o));
        }
        Err(refuse(554, "5.7.1 No valid DKIM signature found"))
    }
}

/// The outbound signer: both keys and the selector.
pub struct Signer {
    selector: String,
    /// PKCS#8 DER, checked at load; parsed per message because the
    /// signer takes its key by value.
    ed25519: Vec<u8>,
    rsa: Vec<u8>,
    /// The public halves as DKIM TXT record values (RFC 6376 §3.6.1).
    pub txt_ed25519: String,
    pub txt_rsa: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

/// The selectors of the two keys: `<selector>-ed` for ed25519 (RFC 8463)
/// and `<selector>` for RSA, which every verifier knows.
pub fn selectors(selector: &str) -> (String, String) {
    (format!("{selector}-ed"), selector.to_owned())
}

fn pkcs8(der: &[u8]) -> rustls::pki_types::PrivateKeyDer<'_> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(der))
}

fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, DkimError>,
) -> Result<(Vec<u8>, bool), DkimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| DkimError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(b) => return Ok((b, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let der = make()?;
    // Written under a temporary name and renamed: a crash leaves no half key.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&der).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok((der, true))
}

impl Signer {
    /// The key pair of `selector`, as the keyring finds it
    /// ([`keys`]: `<data_dir>/dkim/keys/<selector>/`, or
    /// the first pair in `<data_dir>/dkim/` for the configured selector),
    /// generating a missing pair. Newly generated keys are logged with the
    /// TXT records to publish.
    pub fn load_or_generate(data_dir: &Path, selector: &str) -> Result<Signer, DkimError> {
        let ring = keys::Keyring::new(data_dir, selector);
        Self::load_dir(&ring.dir_for_new_or_existing(selector), selector)
    }

    /// Load (or generate) the pair in `dir` (PKCS#8 DER files
    /// `ed25519.der` and `rsa.der`) as `selector`; a generated pair is
    /// logged with its TXT records.
    pub fn load_dir(dir: &Path, selector: &str) -> Result<Signer, DkimError> {
        let (s, generated) = Self::load_dir_quietly(dir, selector)?;
        if generated {
            let (sel_ed, sel_rsa) = selectors(selector);
            tracing::warn!(
                dir = %dir.display(),
                selector_ed25519 = %sel_ed,
                selector_rsa = %sel_rsa,
                txt_ed25519 = %s.txt_ed25519,
                txt_rsa = %s.txt_rsa,
                "DKIM keys generated; publish for each mail domain D: \
                 {sel_ed}._domainkey.D TXT \"{}\" and {sel_rsa}._domainkey.D TXT \"{}\"",
                s.txt_ed25519,
                s.txt_rsa
            );
        }
        Ok(s)
    }

    /// [`Signer::load_dir`] without the log line; also says whether a key
    /// was generated.
    pub fn load_dir_quietly(dir: &Path, selector: &str) -> Result<(Signer, bool), DkimError> {
        let ed_path = dir.join("ed25519.der");
        let (ed_der, ed_new) = read_or_create(&ed_path, || {
            Ed25519Key::generate_pkcs8().map_err(|e| DkimError::Generate(e.to_string()))
        })?;
        let ed = Ed25519Key::from_pkcs8_der(&ed_der).map_err(|e| DkimError::BadKey {
            path: ed_path.clone(),
            why: e.to_string(),
        })?;
        let rsa_path = dir.join("rsa.der");
        let (rsa_der, rsa_new) = read_or_create(&rsa_path, || {
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
                .map_err(|e| DkimError::Generate(e.to_string()))?;
            let der = k
                .to_pkcs8_der()
                .map_err(|e| DkimError::Generate(e.to_string()))?;
            Ok(der.as_bytes().to_vec())
        })?;
        let rsa_spki = {
            use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
            let k = rsa::PrivateKey::from_pkcs8_der(&rsa_der).map_err(|e| DkimError::BadKey {
                path: rsa_path.clone(),
                why: e.to_string(),
            })?;
            k.to_public_key()
                .to_public_key_der()
                .map_err(|e| DkimError::BadKey {
                    path: rsa_path.clone(),
                    why: e.to_string(),
                })?
                .as_bytes()
                .to_vec()
        };
        RsaKey::<Sha256>::from_key_der(pkcs8(&rsa_der)).map_err(|e| DkimError::BadKey {
            path: rsa_path.clone(),
            why: e.to_string(),
        })?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let txt_ed25519 = format!("v=DKIM1; k=ed25519; p={}", b64(&ed.public_key()));
        let txt_rsa = format!("v=DKIM1; k=rsa; p={}", b64(&rsa_spki));
        let s = Signer {
            selector: selector.to_owned(),
            ed25519: ed_der,
            rsa: rsa_der,
            txt_ed25519,
            txt_rsa,
        };
        Ok((s, ed_new || rsa_new))
    }

    /// The pair of `selector` if it exists (nothing is generated:
    /// `frontdoor mail dns` may run as another user than the server).
    pub fn load_existing(data_dir: &Path, selector: &str) -> Result<Option<Signer>, DkimError> {
        let ring = keys::Keyring::new(data_dir, selector);
        match ring.dir_of(selector) {
            Some(dir) => Self::load_dir(&dir, selector).map(Some),
            None => Ok(None),
        }
    }

    /// The selector of this pair (the RSA key's; ed25519 is `<selector>-ed`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// `(selector, TXT value)` of both keys, ed25519 first.
    pub fn records(&self) -> [(String, String); 2] {
        let (ed, rsa) = selectors(&self.selector);
        [(ed, self.txt_ed25519.clone()), (rsa, self.txt_rsa.clone())]
    }

    /// `DKIM-Signature:` fields (ed25519 first, then RSA, each with CRLF)
    /// for `msg` signed as `domain`. A message that cannot be signed (no
    /// signed header present) gets none; the caller sends it as is.
    pub fn sign(&self, domain: &str, msg: &[u8]) -> String {
        let (sel_ed, sel_rsa) = selectors(&self.selector);
        let mut out = String::new();
        for (ed, sel) in [(true, sel_ed), (false, sel_rsa)] {
            let sig = if ed {
                Ed25519Key::from_pkcs8_der(&self.ed25519).and_then(|k| {
                    DkimSigner::from_key(k)
                        .domain(domain)
                        .selector(sel)
                        .headers(SIGNED_HEADERS.iter().copied())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed)
                        .sign(msg)
                })
            } else {
                RsaKey::<Sha256>::from_key_der(pkcs8(&self.rsa)).and_then(|k| {
                    DkimSigner::from_key(k)
                        .domain(domain)
                        .selector(sel)
                        .headers(SIGNED_HEADERS.iter().copied())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed)
                        .sign(msg)
                })
            };
            match sig {
                Ok(s) => out.push_str(&s.to_header()),
                Err(e) => tracing::warn!("DKIM signing failed: {e}"),
            }
        }
        out
    }

    /// `msg` with the signatures for the domain of its `From:` address
    /// prepended, when that domain is one of `local_domains`.
    pub fn sign_message(&self, local_domains: &[String], msg: &[u8]) -> Vec<u8> {
        let froms = crate::mail::message::from_addresses(msg);
        let domain = froms
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let Some(domain) = domain.filter(|d| local_domains.contains(d)) else {
            return msg.to_vec();
        };
        let sigs = self.sign(&domain, msg);
        let mut out = Vec::with_capacity(sigs.len() + msg.len());
        out.extend_from_slice(sigs.as_bytes());
        out.extend_from_slice(msg);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier whose resolver answers nothing: these cases never look up a key.
    fn verifier() -> Verifier {
        Verifier::new(&["127.0.0.1:9".parse().unwrap()], "mx.example.org").unwrap()
    }

    async fn text(msg: &[u8]) -> String {
        let f = verifier().check(msg).await.unwrap_err();
        format!("{} {}", f.code, f.text)
    }

    #[tokio::test]
    async fn refusals_without_dns() {
        let plain = b"From: a@example.org\r\nTo: b@example.net\r\n\r\nhi\r\n";
        assert_eq!(text(plain).await, "554 5.7.1 No DKIM signature found");
        for junk in [&b""[..], b"\r\n\r\n", b"no header at all", &[0xff; 64][..]] {
            assert_eq!(text(junk).await, "554 5.7.1 No DKIM signature found");
        }
        let mut huge = b"X-Long: ".to_vec();
        huge.resize(MAX_HEADER_BYTES + 10, b'a');
        assert_eq!(text(&huge).await, "554 5.6.0 Header section too large");
        let sig =
            "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=x; h=from; bh=AAAA; b=AAAA\r\n";
        let many = format!("{}From: a@example.org\r\n\r\nhi\r\n", sig.repeat(9));
        assert_eq!(
            text(many.as_bytes()).await,
            "554 5.7.1 Too many DKIM signatures (at most 8)"
        );
        let two_from = format!("{sig}From: a@example.org, c@example.org\r\n\r\nhi\r\n");
        assert!(
            text(two_from.as_bytes())
                .await
                .contains("exactly one From: address"),
            "{}",
            text(two_from.as_bytes()).await
        );
        let bad_version = "DKIM-Signature: v=9; a=rsa-sha256; d=example.org; s=x; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\nhi\r\n";
        assert!(
            text(bad_version.as_bytes())
                .await
                .starts_with("554 5.7.1 DKIM signature is invalid: "),
            "{}",
            text(bad_version.as_bytes()).await
        );
    }

    #[test]
    fn keys_are_made_once_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_generate(dir.path(), "sel").unwrap();
        for f in ["ed25519.der", "rsa.der"] {
            let m = std::fs::metadata(dir.path().join("dkim").join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
        let b = Signer::load_or_generate(dir.path(), "sel").unwrap();
        assert_eq!(a.txt_rsa, b.txt_rsa);
        assert_eq!(a.txt_ed25519, b.txt_ed25519);
        assert!(a.txt_ed25519.starts_with("v=DKIM1; k=ed25519; p="));
        assert!(
            a.txt_rsa.starts_with("v=DKIM1; k=rsa; p=MIIB"),
            "{}",
            a.txt_rsa
        );
        let msg = b"From: <a@example.org>\r\nSubject: x\r\n\r\nbody\r\n";
        let local = ["example.org".to_string()];
        let signed = String::from_utf8(a.sign_message(&local, msg)).unwrap();
        assert!(
            signed.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{signed}"
        );
        assert_eq!(signed.matches("DKIM-Signature:").count(), 2, "{signed}");
        assert!(
            signed.contains(" s=sel-ed;") && signed.contains(" s=sel;"),
            "{signed}"
        );
        assert!(signed.ends_with("\r\n\r\nbody\r\n"));
        // Not a local domain: sent as it is.
        assert_eq!(a.sign_message(&["other.example".to_string()], msg), msg);
    }
}
