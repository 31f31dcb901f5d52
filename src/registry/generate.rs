//! Client key generation for `frontdoor keys gen` and the account page: a
//! key pair, a minimal self-signed certificate (CN = the name, no expiry to
//! speak of) and a PKCS#12 bundle of both for mail apps to import. Nothing
//! is written anywhere: the caller decides what to keep (the account page
//! keeps only the public key).

use super::{check_key_acceptable, fingerprint_spki, spki_from_cert_der, Fingerprint, KeyError};

/// The kinds of key generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 (small, fast; not every mail app supports it).
    Ed25519,
    /// ECDSA P-256 (widely supported).
    P256,
    /// RSA 2048 bits (the widest support).
    Rsa,
}

/// Why nothing was generated.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("name {0:?}: use 1-64 letters, digits, '.', '_', '-' or '@' (it becomes a file name), not starting with '.'")]
    BadName(String),
    #[error("key generation: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error(transparent)]
    Refused(#[from] KeyError),
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
}

/// A generated client identity.
pub struct Generated {
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub cert_pem: String,
    pub p12: Vec<u8>,
    pub fingerprint: Fingerprint,
}

/// Make a key of `key_type`, a self-signed certificate with CN=`name` and
/// no expiry to speak of, and a PKCS#12 bundle of both.
pub fn generate(
    name: &str,
    key_type: KeyType,
    p12_password: &str,
    p12_legacy: bool,
) -> Result<Generated, GenError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        && !name.starts_with('.');
    if !valid_name {
        return Err(GenError::BadName(name.to_owned()));
    }
    let kp = match key_type {
        KeyType::Ed25519 => {
            let v2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
            rcgen::KeyPair::try_from(ed25519_pkcs8_v1(v2.serialized_der())?.as_slice())?
        }
        KeyType::P256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyType::Rsa => {
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
                .map_err(|e| GenError::Key(format!("generating an RSA key: {e}")))?;
            let der = k
                .to_pkcs8_der()
                .map_err(|e| GenError::Key(format!("encoding the RSA key: {e}")))?;
            rcgen::KeyPair::try_from(der.as_bytes())?
        }
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    params.distinguished_name = dn;
    let (y, m, d) = today();
    // A day back for clock skew; 9999-12-31 is RFC 5280 §4.1.2.5's "no
    // well-defined expiration date". frontdoor ignores both dates anyway.
    let (py, pm, pd) = civil_from_days(days_from_civil(y, m, d) - 1);
    params.not_before = rcgen::date_time_ymd(py, pm, pd);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&kp)?;
    let spki = spki_from_cert_der(cert.der())?;
    check_key_acceptable(&spki)?;
    let fingerprint = fingerprint_spki(&spki);

    let key = p12_keystore::PrivateKey::from_der(kp.serialized_der())
        .map_err(|e| GenError::Pkcs12(format!("bad private key: {e}")))?;
    let p12_cert = p12_keystore::Certificate::from_der(cert.der())
        .map_err(|e| GenError::Pkcs12(format!("bad certificate: {e}")))?;
    let chain = p12_keystore::PrivateKeyChain::new(fingerprint.0.to_vec(), key, [p12_cert]);
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry(name, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let mut w = ks.writer(p12_password);
    if p12_legacy {
        w = w
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1);
    }
    let p12 = w
        .write()
        .map_err(|e| GenError::Pkcs12(format!("writing: {e}")))?;
    Ok(Generated {
        key_pem: kp.serialize_pem(),
        cert_pem: cert.pem(),
        p12,
        fingerprint,
    })
}

/// ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key),
/// which OpenSSL 3.0 cannot read; rewrite as the v1 form (RFC 8410 §7)
/// that OpenSSL itself writes.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Result<Vec<u8>, GenError> {
    // SEQUENCE { INTEGER 1, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING (32) } ...
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    // The same with version 0 and no public key: 48 bytes in all.
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed = v2
        .strip_prefix(&V2_PREFIX[..])
        .and_then(|rest| rest.get(..32))
        .ok_or_else(|| GenError::Key("unexpected Ed25519 PKCS#8 layout".into()))?;
    Ok([&V1_PREFIX[..], seed].concat())
}

/// Today's date (UTC) from the system clock.
fn today() -> (i32, u8, u8) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_from_days((secs / 86_400) as i64)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

/// Inverse of `civil_from_days`.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
        for d in [-1000, 0, 59, 60, 10_000, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
