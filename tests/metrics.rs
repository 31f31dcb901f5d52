//! Prometheus metrics: scraped over HTTP, the counters move for a scripted
//! set of connections.

mod common;

use common::*;
use sha2::{Digest, Sha256};

fn scrape(addr: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{addr}/metrics")])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_for_scripted_connections() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let fp = format!(
        "sha256:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            Sha256::digest(kp.public_key_der())
        )
    );
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!("keys:\n  - name: alice-phone\n    fingerprint: \"{fp}\"\n    account: alice@example.org\n    login: alice@example.org\n"),
    )
    .unwrap();
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  smtp: {{ alpn: [smtp], backend: \"{dead}\" }}\nclient_auth: {{ registry: keys.yaml, unknown_key: reject }}\nmetrics: {{ listen: \"127.0.0.1:0\" }}\n",
        imap.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    let maddr = fd.metrics_addr().expect("a metrics listener").to_string();
    let a = fd.addrs[0];

    let before = scrape(&maddr);
    assert!(
        before.contains("# TYPE frontdoor_connections counter"),
        "{before}"
    );
    assert_eq!(value(&before, "frontdoor_registry_keys"), 1.0);

    let key = ClientCert {
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::try_from(kp.serialize_der()).unwrap(),
    };
    for _ in 0..3 {
        let mut c = connect(a, &["imap"], "localhost").await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    }
    let mut c = connect_with(
        a,
        client_config(&["imap"], Some(key), Tls::V13),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    drop(c);
    let mut s = connect(a, &["smtp"], "localhost").await.unwrap();
    assert!(read_line(&mut s).await.unwrap().starts_with("421"));
    assert!(connect(a, &["xmpp-client"], "localhost").await.is_err());
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other_cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&other)
        .unwrap();
    let stranger = ClientCert {
        chain: vec![other_cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::try_from(other.serialize_der()).unwrap(),
    };
    if let Ok(mut c) = connect_with(
        a,
        client_config(&["imap"], Some(stranger), Tls::V13),
        "localhost",
    )
    .await
    {
        let _ = read_line(&mut c).await;
    }
    // Seven connections, seven close lines (each counted before its line);
    // the open gauge drops just after the line.
    assert!(
        poll_until_async(T, || fd.count(is_close) >= 7).await,
        "{}",
        fd.logs()
    );
    let open = "frontdoor_connections_open{route=\"imap\",alpn=\"imap\"}";
    assert!(poll_until(T, || value(&scrape(&maddr), open) == 0.0));
    // The two failed handshakes, each with its reason.
    for code in ["no_application_protocol", "client_certificate_refused"] {
        assert_eq!(
            fd.count(|e| closed_with(e, code)),
            1,
            "{code}\n{}",
            fd.logs()
        );
    }

    let m = scrape(&maddr);
    assert_eq!(
        value(
            &m,
            "frontdoor_connections_total{route=\"imap\",alpn=\"imap\"}"
        ),
        4.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_connections_total{route=\"smtp\",alpn=\"smtp\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_connections_open{route=\"imap\",alpn=\"imap\"}"
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_authenticated_connections_total{account=\"alice@example.org\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_backend_connect_failures_total{route=\"smtp\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_handshake_failures_total{reason=\"no_application_protocol\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(&m, "frontdoor_unknown_key_attempts_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "frontdoor_relayed_bytes_total{route=\"imap\",direction=\"down\"}"
        ),
        4.0 * 12.0,
        "{m}"
    );
    assert!(
        value(
            &m,
            "frontdoor_backend_connect_seconds_count{route=\"imap\"}"
        ) >= 4.0,
        "{m}"
    );
    assert!(
        m.contains("frontdoor_certificate_expiry_timestamp_seconds{names=\"localhost\"}"),
        "{m}"
    );

    // A registry reload is counted, a refused one too.
    std::fs::write(dir.path().join("keys.yaml"), "keys: []\n").unwrap();
    fd.signal("HUP");
    let registry = |e: &serde_json::Value| e.get("registry").is_some();
    assert!(fd
        .wait_event(T, |e| registry(e)
            && at(e, "INFO")
            && e.get("keys") == Some(&0.into()))
        .await
        .is_some());
    std::fs::write(dir.path().join("keys.yaml"), "keys: [oops\n").unwrap();
    fd.signal("HUP");
    assert!(fd
        .wait_event(T, |e| registry(e)
            && at(e, "WARN")
            && e.get("kept").is_some())
        .await
        .is_some());
    let m = scrape(&maddr);
    assert!(
        value(&m, "frontdoor_registry_reloads_total{result=\"ok\"}") >= 1.0,
        "{m}"
    );
    assert!(
        value(&m, "frontdoor_registry_reloads_total{result=\"failed\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(value(&m, "frontdoor_registry_keys"), 0.0, "{m}");
}
