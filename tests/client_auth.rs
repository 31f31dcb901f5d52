//! Pinned-key client authentication through the real binary: key types and
//! TLS versions, certificates that only the key makes valid, unknown keys
//! under `reject` and `anonymous`, the identity TLVs and their HMAC, hot
//! reload and revocation, and TLS 1.3 resumption.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use frontdoor::proxy_protocol as pp;
use hmac::{Hmac, Mac};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client key and certificate, with the fingerprint computed here from the
/// SPKI DER (independently of frontdoor).
struct Key {
    cert: ClientCert,
    fp: String,
    fp_raw: [u8; 32],
}

fn fp_of_spki(spki: &[u8]) -> ([u8; 32], String) {
    let raw: [u8; 32] = Sha256::digest(spki).into();
    (
        raw,
        format!(
            "sha256:{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ),
    )
}

/// An rcgen key of `alg` in a certificate with `params`.
fn rcgen_key(alg: &'static rcgen::SignatureAlgorithm, params: rcgen::CertificateParams) -> Key {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = params.self_signed(&kp).unwrap();
    let (fp_raw, fp) = fp_of_spki(&kp.public_key_der());
    Key {
        cert: ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::try_from(kp.serialize_der()).unwrap(),
        },
        fp,
        fp_raw,
    }
}

fn params(cn: &str) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p
}

/// An RSA key of `bits` made by openssl (ring cannot generate RSA keys).
fn openssl_rsa(dir: &Path, name: &str, bits: u32) -> Key {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl req -x509 -newkey rsa:{bits} -nodes -keyout {name}.key -out {name}.crt -subj /CN={name} -days 1 2>/dev/null"
        ))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let crt = std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
    let key = std::fs::read(dir.join(format!("{name}.key"))).unwrap();
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &crt[..])
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pemfile::private_key(&mut &key[..]).unwrap().unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let (fp_raw, fp) = fp_of_spki(parsed.tbs_certificate.subject_pki.raw);
    Key {
        cert: ClientCert { chain, key },
        fp,
        fp_raw,
    }
}

struct Env {
    dir: tempfile::TempDir,
    fd: Frontdoor,
    imap: CaptureBackend,
    registry: PathBuf,
}

fn entry(name: &str, fp: &str, account: &str, preauth: bool) -> String {
    format!("  - name: {name}\n    fingerprint: \"{fp}\"\n    account: {account}\n    login: {account}\n    imap_preauth: {preauth}\n")
}

/// Replace the registry the way an editor does: write elsewhere, rename.
fn write_registry(path: &Path, entries: &[String]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("# pinned keys\nkeys:\n{}", entries.concat())).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn env(unknown_key: &str, entries: &[String], secret: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = write_cert(dir.path(), "server", &["localhost"]);
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let registry = dir.path().join("keys.yaml");
    write_registry(&registry, entries);
    let secret_line = match secret {
        Some(s) => {
            let kp = dir.path().join("identity.key");
            std::fs::write(&kp, s).unwrap();
            std::fs::set_permissions(&kp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            "  identity_secret: identity.key\n"
        }
        None => "",
    };
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nclient_auth:\n  registry: keys.yaml\n  unknown_key: {unknown_key}\n{secret_line}",
        c.display(),
        k.display(),
        imap.addr
    );
    let p = dir.path().join("frontdoor.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    Env {
        dir,
        fd,
        imap,
        registry,
    }
}

/// Connect, then read the greeting; TLS 1.3 clients learn of a refused
/// certificate only on their first read.
async fn greet(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let mut s = connect_with(addr, cfg, "localhost")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    if n == 0 {
        return Err("closed".into());
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn last_header(b: &CaptureBackend) -> pp::Header {
    let raw = b.headers().pop().expect("backend saw a connection").header;
    match pp::decode(&raw).unwrap() {
        pp::Decoded::Complete { header, .. } => header,
        pp::Decoded::Incomplete => panic!("incomplete header"),
    }
}

/// TLVs read with the independent `ppp` decoder.
fn ppp_tlvs(b: &CaptureBackend) -> Vec<(u8, Vec<u8>)> {
    let raw = b.headers().pop().unwrap().header;
    let h = ppp::v2::Header::try_from(raw.as_slice()).unwrap();
    h.tlvs()
        .map(|t| t.unwrap())
        .map(|t| (t.kind, t.value.to_vec()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_authenticates_over_tls13_and_tls12() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = vec![
        ("ed25519", rcgen_key(&rcgen::PKCS_ED25519, params("ed"))),
        (
            "p256",
            rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256, params("p256")),
        ),
        (
            "p384",
            rcgen_key(&rcgen::PKCS_ECDSA_P384_SHA384, params("p384")),
        ),
        ("rsa2048", openssl_rsa(tmp.path(), "rsa2048", 2048)),
    ];
    let entries: Vec<String> = keys
        .iter()
        .map(|(n, k)| entry(n, &k.fp, &format!("{n}@example.org"), true))
        .collect();
    let e = env("reject", &entries, None).await;
    for (name, k) in &keys {
        for v in [Tls::V13, Tls::V12] {
            let g = greet(
                e.fd.addrs[0],
                client_config(&["imap"], Some(k.cert.clone()), v),
            )
            .await;
            assert_eq!(g.as_deref(), Ok("imap ready\r\n"), "{name}");
            let tlvs = ppp_tlvs(&e.imap);
            let get = |t: u8| tlvs.iter().find(|(k, _)| *k == t).map(|(_, v)| v.clone());
            let login = format!("{name}@example.org");
            assert_eq!(
                get(0xE0).unwrap(),
                login.as_bytes(),
                "account TLV for {name}"
            );
            assert_eq!(get(0xE1).unwrap(), login.as_bytes(), "login TLV for {name}");
            assert_eq!(get(0xE2).unwrap(), k.fp_raw, "fingerprint TLV for {name}");
            assert_eq!(get(0xE3).unwrap(), [0u8]);
            assert_eq!(get(0xE4).unwrap(), name.as_bytes());
            let ssl = last_header(&e.imap).ssl().unwrap();
            assert_eq!(ssl.client, pp::PP2_CLIENT_SSL | pp::PP2_CLIENT_CERT_CONN);
            assert_eq!(ssl.verify, 0);
            assert_eq!(ssl.sub(pp::PP2_SUBTYPE_SSL_CN), Some(login.as_bytes()));
            let want_version = if v == Tls::V13 { "TLSv1.3" } else { "TLSv1.2" };
            assert_eq!(
                ssl.sub(pp::PP2_SUBTYPE_SSL_VERSION),
                Some(want_version.as_bytes())
            );
        }
    }
    assert!(
        e.fd.wait_event(T, |e| is_close(e)
            && str_field(e, "account") == "rsa2048@example.org")
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
    assert!(
        e.fd.wait_event(T, |e| is_close(e) && str_field(e, "key") == "p384")
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_key_counts_expired_and_nameless_certificates_authenticate() {
    let mut expired = params("whoever");
    expired.not_before = rcgen::date_time_ymd(2001, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let expired = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256, expired);
    let nameless = rcgen_key(
        &rcgen::PKCS_ED25519,
        rcgen::CertificateParams::new(Vec::<String>::new()).unwrap(),
    );
    let mut future = params("later");
    future.not_before = rcgen::date_time_ymd(2090, 1, 1);
    future.not_after = rcgen::date_time_ymd(2091, 1, 1);
    let future = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256, future);
    let e = env(
        "reject",
        &[
            entry("old", &expired.fp, "a@example.org", true),
            entry("anon", &nameless.fp, "b@example.org", true),
            entry("future", &future.fp, "c@example.org", true),
        ],
        None,
    )
    .await;
    for (k, who) in [
        (&expired, "a@example.org"),
        (&nameless, "b@example.org"),
        (&future, "c@example.org"),
    ] {
        let g = greet(
            e.fd.addrs[0],
            client_config(&["imap"], Some(k.cert.clone()), Tls::V13),
        )
        .await;
        assert_eq!(g.as_deref(), Ok("imap ready\r\n"));
        assert_eq!(last_header(&e.imap).identity().unwrap().account, who);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_claiming_a_login_is_refused_with_bad_certificate() {
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("alice@example.org"));
    let mallory = rcgen_key(&rcgen::PKCS_ED25519, params("alice@example.org"));
    let e = env(
        "reject",
        &[entry("alice-phone", &alice.fp, "alice@example.org", true)],
        None,
    )
    .await;
    for v in [Tls::V13, Tls::V12] {
        let err = greet(
            e.fd.addrs[0],
            client_config(&["imap"], Some(mallory.cert.clone()), v),
        )
        .await
        .unwrap_err();
        assert!(err.contains("BadCertificate"), "{err}");
    }
    assert!(e.imap.headers().is_empty(), "nothing reached the backend");
    // The log names the fingerprint so the operator can pin it.
    assert!(
        e.fd.wait_event(T, |e| str_field(e, "fingerprint") == mallory.fp)
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
    // No client certificate at all is fine on an optional listener: anonymous.
    let g = greet(e.fd.addrs[0], client_config(&["imap"], None, Tls::V13)).await;
    assert_eq!(g.as_deref(), Ok("imap ready\r\n"));
    let h = last_header(&e.imap);
    assert!(h.identity().is_none());
    assert_eq!(h.ssl().unwrap().client, pp::PP2_CLIENT_SSL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_under_anonymous_carries_no_identity() {
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("alice@example.org"));
    let mallory = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256, params("alice@example.org"));
    let e = env(
        "anonymous",
        &[entry("alice-phone", &alice.fp, "alice@example.org", true)],
        None,
    )
    .await;
    let g = greet(
        e.fd.addrs[0],
        client_config(&["imap"], Some(mallory.cert.clone()), Tls::V13),
    )
    .await;
    assert_eq!(g.as_deref(), Ok("imap ready\r\n"));
    let h = last_header(&e.imap);
    assert!(h.identity().is_none());
    let ssl = h.ssl().unwrap();
    assert_eq!(ssl.client, pp::PP2_CLIENT_SSL | pp::PP2_CLIENT_CERT_CONN);
    assert_ne!(ssl.verify, 0);
    assert_eq!(
        ssl.sub(pp::PP2_SUBTYPE_SSL_CN),
        None,
        "the certificate's own CN is never forwarded"
    );
    for t in [0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xEF] {
        assert!(h.tlv(t).is_none(), "TLV {t:#x}");
    }
    assert!(e
        .fd
        .wait_event(T, |e| str_field(e, "fingerprint") == mallory.fp)
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_hmac_verifies_with_the_secret_only() {
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("x"));
    let secret = "0123456789abcdef0123456789abcdef";
    let e = env(
        "reject",
        &[entry("alice-phone", &alice.fp, "alice@example.org", false)],
        Some(&format!("{secret}\n")),
    )
    .await;
    let g = greet(
        e.fd.addrs[0],
        client_config(&["imap"], Some(alice.cert.clone()), Tls::V13),
    )
    .await;
    assert_eq!(g.as_deref(), Ok("imap ready\r\n"));
    let raw = e.imap.headers().pop().unwrap().header;
    // Computed here from the documented layout: HMAC-SHA256 over the header
    // with the last TLV's 32-byte value zeroed.
    assert_eq!(raw[raw.len() - 35], 0xEF);
    let mut zeroed = raw.clone();
    let n = zeroed.len();
    zeroed[n - 32..].fill(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&zeroed);
    assert!(mac.clone().verify_slice(&raw[n - 32..]).is_ok());
    let mut other = Hmac::<Sha256>::new_from_slice(b"another secret, same length.....").unwrap();
    other.update(&zeroed);
    assert!(other.verify_slice(&raw[n - 32..]).is_err());
    let h = last_header(&e.imap);
    assert!(h.verify_hmac(secret.as_bytes()));
    assert!(!h.verify_hmac(b"wrong"));
    assert!(
        h.identity().unwrap().no_imap_preauth,
        "imap_preauth: false sets flag bit 0"
    );
}

#[test]
fn world_readable_secret_and_world_writable_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (c, k) = write_cert(d, "server", &["localhost"]);
    std::fs::write(d.join("keys.yaml"), "keys: []\n").unwrap();
    std::fs::write(d.join("identity.key"), "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(
        d.join("identity.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"127.0.0.1:1\" }}\nclient_auth: {{ registry: keys.yaml, identity_secret: identity.key }}\n",
        c.display(),
        k.display()
    );
    std::fs::write(d.join("f.yaml"), cfg).unwrap();
    let out = Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(d.join("f.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refusing a world-writable file"), "{err}");
    assert!(
        err.contains("identity_secret must not be readable or writable by others"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_removes_and_survives_a_broken_edit() {
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("a"));
    let bob = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256, params("b"));
    let a_entry = entry("alice-phone", &alice.fp, "alice@example.org", true);
    let e = env("reject", std::slice::from_ref(&a_entry), None).await;
    let addr = e.fd.addrs[0];
    assert!(greet(
        addr,
        client_config(&["imap"], Some(bob.cert.clone()), Tls::V13)
    )
    .await
    .is_err());

    // Added by hand: works within 2 s.
    write_registry(
        &e.registry,
        &[
            a_entry.clone(),
            entry("bob-laptop", &bob.fp, "bob@example.org", true),
        ],
    );
    let bob_cfg = client_config(&["imap"], Some(bob.cert.clone()), Tls::V13);
    assert!(
        poll_until_with(Duration::from_secs(2), || {
            let cfg = bob_cfg.clone();
            async move { greet(addr, cfg).await.is_ok() }
        })
        .await,
        "new key not accepted within 2 s"
    );
    assert_eq!(
        last_header(&e.imap).identity().unwrap().account,
        "bob@example.org"
    );

    // A broken edit: the last good registry stays, the log names the line.
    let broken = format!("keys:\n{a_entry}  - name: bob-laptop\n    fingerprint: \"sha256:not-base64!\"\n    account: bob@example.org\n    login: bob@example.org\n");
    std::fs::write(e.dir.path().join("broken.tmp"), broken).unwrap();
    std::fs::rename(e.dir.path().join("broken.tmp"), &e.registry).unwrap();
    assert!(
        e.fd.wait_event(Duration::from_secs(5), |e| e.get("kept").is_some()
            && str_field(e, "problem").contains("keys.yaml:8"))
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
    assert!(greet(
        addr,
        client_config(&["imap"], Some(bob.cert.clone()), Tls::V13)
    )
    .await
    .is_ok());

    // Removed: an open connection of that key is closed within 2 s, and new ones fail.
    let reloads =
        |fd: &Frontdoor| fd.count(|e| e.get("registry").is_some() && e.get("keys").is_some());
    let n = reloads(&e.fd);
    write_registry(
        &e.registry,
        &[
            a_entry.clone(),
            entry("bob-laptop", &bob.fp, "bob@example.org", true),
        ],
    );
    // In force once reloaded (the watcher polls the file).
    assert!(
        poll_until_async(T, || reloads(&e.fd) > n).await,
        "{}",
        e.fd.logs()
    );
    let mut open = connect_with(
        addr,
        client_config(&["imap"], Some(bob.cert.clone()), Tls::V13),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut open).await.unwrap(), "imap ready\r\n");
    let mut alice_open = connect_with(
        addr,
        client_config(&["imap"], Some(alice.cert.clone()), Tls::V13),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut alice_open).await.unwrap(), "imap ready\r\n");
    write_registry(&e.registry, std::slice::from_ref(&a_entry));
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(3), open.read(&mut buf))
        .await
        .expect("closed within the bound");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    assert!(greet(
        addr,
        client_config(&["imap"], Some(bob.cert.clone()), Tls::V13)
    )
    .await
    .is_err());
    // Other keys' sessions go on.
    alice_open.write_all(b"a1 NOOP\r\n").await.unwrap();
    assert_eq!(read_line(&mut alice_open).await.unwrap(), "a1 NOOP\r\n");
    let closed =
        e.fd.wait_event(T, |e| {
            closed_with(e, "stopped") && str_field(e, "key") == "bob-laptop"
        })
        .await
        .unwrap_or_else(|| panic!("{}", e.fd.logs()));
    assert!(
        str_field(&closed, "reason").contains("client key removed from the registry"),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_are_checked_against_the_current_registry() {
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("a"));
    let a_entry = entry("alice-phone", &alice.fp, "alice@example.org", true);
    let e = env("reject", std::slice::from_ref(&a_entry), None).await;
    let addr = e.fd.addrs[0];
    // One client config = one session cache: later connections resume.
    let cfg = client_config(&["imap"], Some(alice.cert.clone()), Tls::V13);
    let mut resumed = 0;
    for i in 0..3 {
        let mut s = connect_with(addr, cfg.clone(), "localhost").await.unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        if s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
            assert!(i > 0);
        }
        assert_eq!(
            last_header(&e.imap).identity().unwrap().login,
            "alice@example.org",
            "round {i}"
        );
        s.shutdown().await.unwrap();
    }
    assert!(resumed >= 1, "the client resumed a TLS 1.3 session");

    write_registry(&e.registry, &[]);
    assert!(
        e.fd.wait_event(Duration::from_secs(5), |e| e.get("registry").is_some()
            && e.get("keys") == Some(&0.into()))
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
    let before = e.imap.headers().len();
    let mut s = connect_with(addr, cfg.clone(), "localhost").await.unwrap();
    assert_eq!(
        s.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "this attempt resumes"
    );
    let mut buf = [0u8; 32];
    let r = tokio::time::timeout(T, s.read(&mut buf)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "refused, got {r:?}");
    assert_eq!(
        e.imap.headers().len(),
        before,
        "no identity and no connection reached the backend"
    );
    assert!(e
        .fd
        .wait_event(T, |e| closed_with(e, "unknown_key"))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_rsa_is_refused_even_when_pinned_and_no_ca_hints_are_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let weak = openssl_rsa(tmp.path(), "weak", 1024);
    let e = env(
        "reject",
        &[entry("weak", &weak.fp, "w@example.org", true)],
        None,
    )
    .await;
    // rustls clients cannot sign with RSA-1024; OpenSSL can when told to.
    // Under TLS 1.3 the alert arrives after the handshake: keep stdin open a
    // moment so s_client reads it before it closes.
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &e.fd.addrs[0].to_string(),
            "-alpn",
            "imap",
            "-servername",
            "localhost",
        ])
        .args([
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-cert",
            "weak.crt",
            "-key",
            "weak.key",
        ])
        .current_dir(tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    // The refusal's alert is sent before its close line is written: once
    // the line is out, s_client has the alert to read.
    let refused =
        e.fd.wait_event(T, |e| closed_with(e, "client_certificate_refused"))
            .await;
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("alert bad certificate"), "{text}");
    assert!(!text.contains("imap ready"), "{text}");
    assert!(e.imap.headers().is_empty());
    assert!(refused.is_some(), "{}", e.fd.logs());
    // The refusal names the key, with the reason rustls' checks gave.
    assert!(
        e.fd.wait_event(T, |e| at(e, "WARN")
            && e.get("fingerprint").is_some()
            && e.get("error").is_some())
            .await
            .is_some(),
        "{}",
        e.fd.logs()
    );
    // openssl s_client shows the CertificateRequest's CA list: empty.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &e.fd.addrs[0].to_string(),
            "-alpn",
            "imap",
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No client certificate CA names sent"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_auth_listener_refuses_clients_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let alice = rcgen_key(&rcgen::PKCS_ED25519, params("a"));
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let reg = dir.path().join("keys.yaml");
    write_registry(
        &reg,
        &[entry("alice-phone", &alice.fp, "alice@example.org", true)],
    );
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    client_auth: required\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nclient_auth: {{ registry: keys.yaml, unknown_key: anonymous }}\n",
        imap.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let err = greet(fd.addrs[0], client_config(&["imap"], None, Tls::V13))
        .await
        .unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("closed") || err.contains("Alert"),
        "{err}"
    );
    let g = greet(
        fd.addrs[0],
        client_config(&["imap"], Some(alice.cert.clone()), Tls::V13),
    )
    .await;
    assert_eq!(g.as_deref(), Ok("imap ready\r\n"));
    assert_eq!(imap.headers().len(), 1);
}
