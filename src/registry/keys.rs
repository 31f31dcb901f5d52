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
                kind_of_oids(alg, Some(&curve))
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
        Ok(kind_of_oids(alg, None))
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
/// PKCS#1 PEM, or PKCS#8 DER), whose public half is derived, or a PKCS#12
/// bundle without a password (its certificate). In a PEM file the first
/// certificate or key found is used.
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
        // A PKCS#12 bundle without a password, as `keys gen` writes.
        if let Ok(ks) = p12_keystore::KeyStore::from_pkcs12(
            bytes,
            "",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        ) {
            if let Some(cert) = ks.private_key_chain().and_then(|(_, c)| c.certs().first()) {
                return spki_from_cert_der(cert.as_der());
            }
        }
        return Err(unrecognised(
            "not a certificate, public key or private key (expected PEM, or DER of a certificate, \
             PKCS#8 private key, SubjectPublicKeyInfo or a PKCS#12 file without password; for one \
             with a password: openssl pkcs12 -in FILE -clcerts -nokeys -out cert.pem)",
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
    match rcgen::KeyPair::try_from(der) {
        Ok(kp) => Ok(kp.public_key_der()),
        // Say which kind it is when we can tell: "Ed448 keys are not accepted"
        // helps more than "cannot read".
        Err(_) => Err(match pkcs8_algorithm(der) {
            Some(kind @ KeyKind::Other(_)) => KeyError::NotAccepted(kind),
            _ => KeyError::BadPrivateKey(
                "not a valid Ed25519, ECDSA P-256/P-384 or RSA PKCS#8 private key".into(),
            ),
        }),
    }
}

/// The key kind a PKCS#8 `PrivateKeyInfo` names in its AlgorithmIdentifier.
fn pkcs8_algorithm(der: &[u8]) -> Option<KeyKind> {
    use x509_parser::der_parser::ber::BerObjectContent;
    use x509_parser::der_parser::der::parse_der;
    let (_, obj) = parse_der(der).ok()?;
    let BerObjectContent::Sequence(items) = &obj.content else {
        return None;
    };
    let BerObjectContent::Sequence(alg) = &items.get(1)?.content else {
        return None;
    };
    let oid = alg.first()?.as_oid().ok()?.to_owned();
    let param = alg
        .get(1)
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_owned());
    Some(kind_of_oids(&oid, param.as_ref()))
}

/// Name a key algorithm (and EC curve) for messages.
fn kind_of_oids(alg: &Oid, curve: Option<&Oid>) -> KeyKind {
    if *alg == OID_SIG_ED25519 {
        return KeyKind::Ed25519;
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return KeyKind::Other("RSA".into());
    }
    let named = |o: &Oid| -> Option<&'static str> {
        Some(match o.to_id_string().as_str() {
            "1.3.101.110" => "X25519",
            "1.3.101.111" => "X448",
            "1.3.101.113" => "Ed448",
            "1.2.840.10040.4.1" => "DSA",
            "1.2.840.113549.1.1.10" => "RSA-PSS (restricted)",
            "1.3.132.0.35" => "ECDSA P-521",
            "1.3.132.0.10" => "ECDSA secp256k1",
            "1.2.840.10045.3.1.7" => "ECDSA P-256",
            "1.3.132.0.34" => "ECDSA P-384",
            _ => return None,
        })
    };
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        return KeyKind::Other(match curve {
            Some(c) => named(c)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("ECDSA on curve {c}")),
            None => "ECDSA with no named curve".into(),
        });
    }
    KeyKind::Other(
        named(alg)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("public key algorithm {alg}")),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::fingerprint_spki;

    fn spki_of(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        rcgen::KeyPair::generate_for(alg).unwrap().public_key_der()
    }

    #[test]
    fn kinds_of_accepted_keys() {
        assert_eq!(
            check_key_acceptable(&spki_of(&rcgen::PKCS_ED25519)).unwrap(),
            KeyKind::Ed25519
        );
        assert_eq!(
            check_key_acceptable(&spki_of(&rcgen::PKCS_ECDSA_P256_SHA256)).unwrap(),
            KeyKind::EcdsaP256
        );
        assert_eq!(
            check_key_acceptable(&spki_of(&rcgen::PKCS_ECDSA_P384_SHA384)).unwrap(),
            KeyKind::EcdsaP384
        );
    }

    #[test]
    fn weak_and_unknown_keys_are_refused_by_name() {
        let k = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let spki = rsa_spki(&k).unwrap();
        assert_eq!(
            KeyKind::of_spki(&spki).unwrap(),
            KeyKind::Rsa { bits: 1024 }
        );
        assert_eq!(
            check_key_acceptable(&spki).unwrap_err().to_string(),
            "RSA-1024 keys are not accepted: frontdoor accepts Ed25519, ECDSA P-256, ECDSA P-384 and RSA of at least 2048 bits"
        );
        // An Ed448 SPKI (RFC 8410 §4): algorithm 1.3.101.113, 57-byte key.
        let mut ed448 = vec![
            0x30, 0x43, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x03, 0x3a, 0x00,
        ];
        ed448.extend_from_slice(&[7u8; 57]);
        assert_eq!(
            KeyKind::of_spki(&ed448).unwrap(),
            KeyKind::Other("Ed448".into())
        );
        assert!(check_key_acceptable(&ed448).is_err());
        // Garbage and trailing bytes are errors, not panics.
        assert!(KeyKind::of_spki(b"").is_err());
        let mut long = spki_of(&rcgen::PKCS_ED25519);
        long.push(0);
        assert!(KeyKind::of_spki(&long).is_err());
    }

    #[test]
    fn only_the_key_of_a_certificate_counts() {
        // Expired long ago, no SAN, CN of someone else: the SPKI is what we get.
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "postmaster@example.org");
        let cert = p.self_signed(&kp).unwrap();
        let spki = spki_from_cert_der(cert.der()).unwrap();
        assert_eq!(spki, kp.public_key_der());
        assert_eq!(
            fingerprint_spki(&spki),
            fingerprint_spki(&kp.public_key_der())
        );
        // From files: certificate PEM, public key PEM, private key PEM all agree.
        for text in [cert.pem(), kp.public_key_pem(), kp.serialize_pem()] {
            assert_eq!(public_key_from_bytes(text.as_bytes()).unwrap(), spki);
        }
        assert_eq!(public_key_from_bytes(cert.der()).unwrap(), spki);
        assert!(spki_from_cert_der(b"not a certificate").is_err());
        assert!(public_key_from_bytes(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
    }
}
