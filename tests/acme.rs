//! Certificates by ACME against Let's Encrypt's test CA `pebble` (Debian
//! package `pebble`), started here on loopback with its mock DNS server
//! `pebble-challtestsrv` answering every name with 127.0.0.1. Pebble's
//! validator really connects to frontdoor's listener with ALPN `acme-tls/1`.

mod common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "mail.example.org";

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install the Debian package `pebble` (apt-get install -y pebble)"
    );
}

/// Kills the child on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pebble {
    _dns: Proc,
    _ca: Proc,
    directory: String,
    management: SocketAddr,
    /// Trust anchor for pebble's own HTTPS (generated here).
    api_ca: PathBuf,
}

/// A CA and a `localhost`/127.0.0.1 certificate it signed, for pebble's HTTPS API.
fn api_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test API CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (c, k, a) = (
        dir.join("api.crt"),
        dir.join("api.key"),
        dir.join("api-ca.crt"),
    );
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca.pem()).unwrap();
    (c, k, a)
}

/// Start pebble, validating tls-alpn-01 on `tls_port`.
async fn start_pebble(dir: &Path, tls_port: u16) -> Pebble {
    need("pebble");
    need("pebble-challtestsrv");
    let (cert, key, api_ca) = api_certs(dir);
    let (listen, mgmt, dns, dns_mgmt, http) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let cfg_path = dir.join("pebble.json");
    std::fs::write(&cfg_path, config.to_string()).unwrap();
    let dns_proc = Proc(
        Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca_proc = Proc(
        Command::new("pebble")
            .arg("-config")
            .arg(&cfg_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // Validate at once, and do not reject nonces at random: the
            // test is about frontdoor, not about retry timing.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        poll_until_with(Duration::from_secs(30), || async move {
            TcpStream::connect(("127.0.0.1", listen)).await.is_ok()
        })
        .await,
        "pebble did not listen on 127.0.0.1:{listen} within 30 s"
    );
    Pebble {
        _dns: dns_proc,
        _ca: ca_proc,
        directory: format!("https://127.0.0.1:{listen}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], mgmt)),
        api_ca,
    }
}

fn roots_from(pem: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

fn verifying_config(roots: rustls::RootCertStore, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// GET `path` from pebble's management API; the body.
async fn management_get(p: &Pebble, path: &str) -> Vec<u8> {
    let roots = roots_from(&std::fs::read(&p.api_ca).unwrap());
    let tcp = TcpStream::connect(p.management).await.unwrap();
    let c = tokio_rustls::TlsConnector::from(verifying_config(roots, &[]));
    let mut s = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    out[split + 4..].to_vec()
}

/// Plain HTTP/1.0 GET; the body.
async fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(text)
}

/// The certificate chain frontdoor serves for `sni`, accepting anything.
async fn served_chain(addr: SocketAddr, sni: &str) -> Vec<CertificateDer<'static>> {
    let s = connect(addr, &["http/1.1"], sni).await.unwrap();
    s.get_ref().1.peer_certificates().unwrap().to_vec()
}

fn config(port: u16, backend: SocketAddr, pebble: &Pebble, state: &Path) -> String {
    format!(
        "listeners:\n  - bind: \"127.0.0.1:{port}\"\n    default_route: web\n\
         tls:\n  acme:\n    domains: [{DOMAIN}]\n    email: postmaster@example.org\n\
         \x20   directory: \"{dir}\"\n    directory_ca: {ca}\n    state_dir: {state}\n\
         routes:\n  web:\n    alpn: [http/1.1]\n    backend: \"{backend}\"\n    proxy_protocol: v2\n\
         metrics:\n  listen: \"127.0.0.1:0\"\n",
        dir = pebble.directory,
        ca = pebble.api_ca.display(),
        state = state.display(),
    )
}

/// Pebble validating on a free port, a greeting backend, and a frontdoor
/// config for that port with its ACME state in `acme-state` (not created).
struct Setup {
    _backend: CaptureBackend,
    pebble: Pebble,
    state: PathBuf,
    cfg_path: PathBuf,
}

async fn setup(d: &Path) -> Setup {
    let port = free_port();
    let pebble = start_pebble(d, port).await;
    let backend = CaptureBackend::start("web", Expect::V2).await;
    let state = d.join("acme-state");
    let cfg_path = d.join("frontdoor.yaml");
    std::fs::write(&cfg_path, config(port, backend.addr, &pebble, &state)).unwrap();
    Setup {
        _backend: backend,
        pebble,
        state,
        cfg_path,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_by_tls_alpn_01_and_the_certificate_is_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Setup {
        _backend,
        pebble,
        state,
        cfg_path,
    } = setup(dir.path()).await;

    let fd = Frontdoor::start(&cfg_path, 1);
    let addr = fd.addrs[0];

    // A connection made before the certificate arrives: the self-signed
    // stand-in, relayed as usual; it must survive the swap.
    let mut early = connect(addr, &["http/1.1"], DOMAIN).await.unwrap();
    assert_eq!(read_line(&mut early).await.unwrap(), "web ready\r\n");

    assert!(
        fd.wait_event(Duration::from_secs(90), issued)
            .await
            .is_some(),
        "no certificate within 90 s; log:\n{}",
        fd.logs()
    );
    assert!(
        fd.events()
            .wait_event(Duration::from_secs(10), |e| closed_with(e, "acme_answered"))
            .await
            .is_some(),
        "pebble's validator never completed a handshake: {}",
        fd.logs()
    );

    // Pebble's root (made fresh each run) now verifies what is served, by name.
    let root = management_get(&pebble, "/roots/0").await;
    let cfg = verifying_config(roots_from(&root), &["http/1.1"]);
    let mut s = connect_with(addr, cfg.clone(), DOMAIN)
        .await
        .expect("the ACME certificate verifies against pebble's root");
    assert_eq!(read_line(&mut s).await.unwrap(), "web ready\r\n");
    let chain = s.get_ref().1.peer_certificates().unwrap().to_vec();
    assert!(chain.len() >= 2, "leaf and intermediate are served");

    // The early connection still relays.
    early.write_all(b"still here\r\n").await.unwrap();
    assert_eq!(read_line(&mut early).await.unwrap(), "still here\r\n");

    // The metrics say so too.
    let maddr = fd.metrics_addr().expect("metrics listener").to_string();
    let metrics = http_get(&maddr, "/metrics").await;
    assert!(
        metrics.contains("frontdoor_acme_orders_total{result=\"ok\"} 1\n"),
        "{metrics}"
    );
    let (_, leaf) = x509_parser::parse_x509_certificate(chain[0].as_ref()).unwrap();
    let expiry = format!(
        "frontdoor_certificate_expiry_timestamp_seconds{{names=\"{DOMAIN}\"}} {}\n",
        leaf.validity().not_after.timestamp()
    );
    assert!(metrics.contains(&expiry), "{expiry} in {metrics}");

    // State on disk, private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["account.json", "cert.pem", "key.pem"] {
        let m = std::fs::metadata(state.join(f)).unwrap();
        assert_eq!(m.permissions().mode() & 0o077, 0, "{f} is private");
    }

    // No challenge pending: a handshake offering acme-tls/1 gets nothing.
    let probe = connect(addr, &["acme-tls/1"], DOMAIN).await;
    assert!(
        probe.is_err(),
        "acme-tls/1 without a pending challenge must fail"
    );

    // Restart with the CA gone: the stored certificate is served at once.
    drop(fd);
    drop(s);
    drop(early);
    let root_store = roots_from(&root);
    drop(pebble);
    let fd = Frontdoor::start(&cfg_path, 1);
    let mut s = connect_with(
        fd.addrs[0],
        verifying_config(root_store, &["http/1.1"]),
        DOMAIN,
    )
    .await
    .expect("stored certificate served after restart");
    assert_eq!(read_line(&mut s).await.unwrap(), "web ready\r\n");
    assert_eq!(served_chain(fd.addrs[0], DOMAIN).await, chain);
    assert!(
        fd.events().event(ordering).is_none(),
        "a valid stored certificate is not ordered again: {}",
        fd.logs()
    );
}

/// The event of a certificate put in force (it names its expiry).
fn issued(e: &serde_json::Value) -> bool {
    at(e, "INFO") && e.get("not_after").is_some() && e.get("domains").is_some()
}

/// The event of an order starting (it names the directory).
fn ordering(e: &serde_json::Value) -> bool {
    at(e, "INFO") && e.get("directory").is_some() && e.get("domains").is_some()
}

#[test]
fn acme_config_mistakes_are_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("frontdoor.yaml");
    std::fs::write(
        &p,
        "listeners:\n  - bind: \"127.0.0.1:8443\"\n    default_route: web\n\
         tls:\n  acme:\n    domains: [\"*.example.org\", \"bad name\"]\n    directory: http://ca.example/dir\n\
         routes:\n  web:\n    alpn: [http/1.1]\n    backend: \"127.0.0.1:8080\"\n",
    )
    .unwrap();
    let out = Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    assert!(
        err.contains(&format!("{file}:5: tls.acme: state_dir is required")),
        "{err}"
    );
    assert!(
        err.contains("tls.acme.domains[0]") && err.contains("dns-01"),
        "{err}"
    );
    assert!(err.contains("\"bad name\" is not a DNS name"), "{err}");
    assert!(
        err.contains(&format!("{file}:7: tls.acme.directory: ")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_certificate_near_expiry_is_served_then_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let Setup {
        _backend,
        pebble,
        state,
        cfg_path,
    } = setup(dir.path()).await;
    std::fs::create_dir(&state).unwrap();
    // A certificate with 10 days left, inside the default 30-day window.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![DOMAIN.to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(80);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let old = params.self_signed(&key).unwrap();
    std::fs::write(state.join("cert.pem"), old.pem()).unwrap();
    std::fs::write(state.join("key.pem"), key.serialize_pem()).unwrap();

    let fd = Frontdoor::start(&cfg_path, 1);
    let addr = fd.addrs[0];
    // Served at once (the stored one, not a stand-in), while the renewal runs.
    assert_eq!(
        served_chain(addr, DOMAIN).await[0].as_ref(),
        old.der().as_ref()
    );
    assert!(
        fd.wait_event(Duration::from_secs(90), issued)
            .await
            .is_some(),
        "no renewal within 90 s; log:\n{}",
        fd.logs()
    );
    let root = management_get(&pebble, "/roots/0").await;
    let mut s = connect_with(
        addr,
        verifying_config(roots_from(&root), &["http/1.1"]),
        DOMAIN,
    )
    .await
    .expect("the renewed certificate verifies against pebble's root");
    assert_eq!(read_line(&mut s).await.unwrap(), "web ready\r\n");
    let on_disk = std::fs::read(state.join("cert.pem")).unwrap();
    assert_ne!(
        on_disk,
        old.pem().into_bytes(),
        "the renewed certificate is stored"
    );
}
