//! Certificates made at test time: server certificates and client keys.

use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A self-signed server certificate for `names`, written as PEM files in `dir`.
pub fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let c = dir.join(format!("{stem}.crt"));
    let k = dir.join(format!("{stem}.key"));
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k)
}

/// A client key: PEM files `<name>.crt`/`<name>.key` in the test dir, and
/// its pinned fingerprint (`sha256:` of the SubjectPublicKeyInfo).
pub struct Key {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
}

/// A P-256 client key whose certificate claims a CN that means nothing.
pub fn make_key(dir: &Path, name: &str) -> Key {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    // The certificate's own CN is chosen by the client and means nothing.
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "mallory@example.org");
    let cert = p.self_signed(&kp).unwrap();
    let fp = format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(kp.public_key_der()))
    );
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, kp.serialize_pem()).unwrap();
    Key {
        name: name.into(),
        cert: c,
        key: k,
        fingerprint: fp,
    }
}

/// A client identity: certificate chain and key.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientCert {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}
