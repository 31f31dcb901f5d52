//! Public keys: where they come from (certificates, key files) and which
//! kinds frontdoor accepts.
//!
//! Only the SubjectPublicKeyInfo of a certificate matters (DESIGN §3):
//! validity dates, names, extensions and the version are ignored, so an
//! expired, v1 or SAN-less self-signed certificate works as well as any.
//! Accepted keys are those rustls can verify a client signature with:
//! Ed25519, ECDSA P-256/P-384 (uncompressed points) and RSA of at least
//! 2048 bits.

use std::fmt;
use std::io::Read;
use std::path::Path;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Key files are small; anything larger is not one.
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be read or is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{path}: file is larger than {MAX_KEY_FILE} bytes; not a key or certificate")]
    TooLarge { path: String },
    #[error("not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    #[error("not a valid SubjectPublicKeyInfo: {0}")]
    BadPublicKey(String),
    #[error("cannot read the private key: {0}")]
    BadPrivateKey(String),
    #[error("{path}: {reason}")]
    Unrecognised { path: String, reason: String },
    #[error("{0} keys are not accepted: frontdoor accepts Ed25519, ECDSA P-256, ECDSA P-384 and RSA of at least {MIN_RSA_BITS} bits")]
    NotAccepted(KeyKind),
}

/// The kind of a public key, from its SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    Rsa {
        bits: usize,
    },
    /// Anything else, described for humans.
    Other(String),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::Other(s) => f.write_str(s),
        }
    }
}

impl KeyKind {
    /// Classify a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Result<KeyKind, KeyError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyError::BadPublicKey(format!(
                "{} bytes after the end",
                rest.len()
            )));
        }
        let alg = &spki.algorithm.algorithm;
        let key = &spki.subject_public_key.data;
        if *alg == OID_SIG_ED25519 {
            return Ok(if key.len() == 32 && spki.algorithm.parameters.is_none() {
                KeyKind::Ed25519
            } else {
                KeyKind::Other("malformed Ed25519".into())
            });
        }
        if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve: Option<Oid> = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let Some(curve) = curve else {
                return Ok(KeyKind::Other("ECDSA with no named curve".into()));
            };
            // rustls (ring) verifies uncompressed points only.
            let uncompressed = |len: usize| key.len() == len && key.first() == Some(&4);
            return Ok(if curve == OID_EC_P256 {
                if uncompressed(65) {
                    KeyKind::EcdsaP256
                } else {
                    KeyKind::Other("ECDSA P-256 with a compressed or malformed point".into())
                }
            } else if curve == OID_NIST_EC_P384 {
                if uncompressed(97) {
                    KeyKind::EcdsaP384
                } else {
                    KeyKind::Other("ECDSA P-384 with a compressed or malformed point".into())
                }
            } else {
                KeyKind::Other(format!("ECDSA on curve {curve}"))
            });
        }
        if *alg == OID_PKCS1_RSAENCRYPTION {
            return match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => Ok(KeyKind::Rsa {
                    bits: rsa.key_size(),
                }),
                _ => Err(KeyError::BadPublicKey("malformed RSA public key".into())),
            };
        }
        Ok(KeyKind::Other(format!("public key algorithm {alg}")))
    }
}

/// Classify `spki_der` and refuse anything frontdoor does not accept.
pub fn check_key_acceptable(spki_der: &[u8]) -> Result<KeyKind, KeyError> {
    match KeyKind::of_spki(spki_der)? {
        k @ (KeyKind::Ed25519 | KeyKind::EcdsaP256 | KeyKind::EcdsaP384) => Ok(k),
        KeyKind::Rsa { bits } if bits >= MIN_RSA_BITS => Ok(KeyKind::Rsa { bits }),
        k => Err(KeyError::NotAccepted(k)),
    }
}

/// The DER SubjectPublicKeyInfo of a DER certificate. Nothing else in the
/// certificate is looked at beyond what parsing needs.
pub fn spki_from_cert_der(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| KeyError::BadCertificate(e.to_string()))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// Read a file (bounded) as bytes.
fn read_small(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = path.display().to_string();
    let io = |err| KeyError::Io {
        path: shown.clone(),
        err,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::TooLarge { path: shown });
    }
    Ok(buf)
}

/// The DER SubjectPublicKeyInfo in `path`: a certificate (PEM or DER), a
/// public key (`BEGIN PUBLIC KEY`), or a private key (PKCS#8, SEC1 or
/// PKCS#1 PEM, or PKCS#8 DER), whose public half is derived. In a PEM file
/// the first certificate or key found is used.
pub fn load_public_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = read_small(path)?;
    public_key_from_bytes(&bytes).map_err(|e| match e {
        KeyError::Unrecognised { reason, .. } => KeyError::Unrecognised {
            path: path.display().to_string(),
            reason,
        },
        e => e,
    })
}

/// As `load_public_key`, on the file's contents.
pub fn public_key_from_bytes(bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    use rustls_pemfile::Item;
    let unrecognised = |reason: &str| KeyError::Unrecognised {
        path: "input".into(),
        reason: reason.into(),
    };
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if !looks_pem {
        // DER: a certificate, else a PKCS#8 private key, else a bare SPKI.
        if let Ok(spki) = spki_from_cert_der(bytes) {
            return Ok(spki);
        }
        if let Ok(spki) = spki_from_pkcs8(bytes) {
            return Ok(spki);
        }
        if KeyKind::of_spki(bytes).is_ok() {
            return Ok(bytes.to_vec());
        }
        return Err(unrecognised(
            "not a certificate, public key or private key (expected PEM, or DER of a certificate, \
             PKCS#8 private key or SubjectPublicKeyInfo)",
        ));
    }
    let mut rd = bytes;
    let mut saw_other = Vec::new();
    // Bounded: each item consumes input, and the input is at most MAX_KEY_FILE.
    loop {
        let item = rustls_pemfile::read_one_from_slice(rd).map_err(|e| KeyError::Unrecognised {
            path: "input".into(),
            reason: format!("bad PEM: {e:?}"),
        })?;
        let Some((item, rest)) = item else { break };
        rd = rest;
        match item {
            Item::X509Certificate(der) => return spki_from_cert_der(&der),
            Item::SubjectPublicKeyInfo(der) => {
                KeyKind::of_spki(der.as_ref())?;
                return Ok(der.as_ref().to_vec());
            }
            Item::Pkcs8Key(der) => return spki_from_pkcs8(der.secret_pkcs8_der()),
            Item::Pkcs1Key(der) => return spki_from_pkcs1(der.secret_pkcs1_der()),
            Item::Sec1Key(der) => return spki_from_sec1(der.secret_sec1_der()),
            Item::Crl(_) => saw_other.push("CRL"),
            Item::Csr(_) => saw_other.push("certificate request"),
            _ => saw_other.push("unknown PEM section"),
        }
    }
    if bytes.windows(19).any(|w| w == b"ENCRYPTED PRIVATE K") {
        return Err(unrecognised(
            "the private key is encrypted; give the certificate or public key instead \
             (openssl pkey -in KEY -pubout)",
        ));
    }
    Err(unrecognised(&format!(
        "no certificate, public key or private key found in the PEM{}",
        if saw_other.is_empty() {
            String::new()
        } else {
            format!(" (found: {})", saw_other.join(", "))
        }
    )))
}

/// Public key of a PKCS#8 private key (RSA via the rsa crate, so that weak
/// RSA keys are still read and then refused by name; others via ring).
fn spki_from_pkcs8(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(der) {
        return rsa_spki(&k);
    }
    let kp = rcgen::KeyPair::try_from(der).map_err(|_| {
        KeyError::BadPrivateKey(
            "not an Ed25519, ECDSA P-256/P-384 or RSA PKCS#8 private key".into(),
        )
    })?;
    Ok(kp.public_key_der())
}

fn spki_from_pkcs1(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let k =
        rsa::PrivateKey::from_pkcs1_der(der).map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
    rsa_spki(&k)
}

fn rsa_spki(k: &rsa::PrivateKey) -> Result<Vec<u8>, KeyError> {
    k.to_public_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| KeyError::BadPrivateKey(e.to_string()))
}

/// SEC1 `ECPrivateKey` → PKCS#8 `PrivateKeyInfo` (RFC 5915 §3 inside RFC
/// 5208), then derive as for PKCS#8. The curve comes from the key's own
/// `parameters`; ring checks the point against the private scalar.
fn spki_from_sec1(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    use x509_parser::der_parser::ber::BerObjectContent;
    use x509_parser::der_parser::der::parse_der;
    let bad = |m: &str| KeyError::BadPrivateKey(format!("SEC1 EC key: {m}"));
    let (_, obj) = parse_der(der).map_err(|_| bad("not DER"))?;
    let BerObjectContent::Sequence(items) = &obj.content else {
        return Err(bad("not a SEQUENCE"));
    };
    // [0] EXPLICIT parameters: its content is the DER of the curve's OID.
    let mut curve_der = None;
    for it in items {
        if it.header.is_contextspecific() && it.header.tag().0 == 0 {
            let inner = it.as_slice().map_err(|_| bad("bad parameters"))?;
            let (_, oid) = parse_der(inner).map_err(|_| bad("bad parameters"))?;
            if oid.as_oid().is_ok() {
                curve_der = Some(inner.to_vec());
            }
        }
    }
    let curve_der = curve_der
        .ok_or_else(|| bad("no named curve in the key; convert it to PKCS#8 with openssl pkey"))?;
    // AlgorithmIdentifier { id-ecPublicKey, curve }
    let ec_public_key_oid: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let alg = der_tlv(0x30, &[ec_public_key_oid, &curve_der].concat());
    let pkcs8 = der_tlv(
        0x30,
        &[&[0x02, 0x01, 0x00][..], &alg, &der_tlv(0x04, der)].concat(),
    );
    spki_from_pkcs8(&pkcs8)
}

/// DER tag-length-value with a definite length.
pub(crate) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}
