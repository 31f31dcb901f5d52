//! Scale-out: frontdoor behind a layer-4 load balancer that sends a PROXY
//! header before the TLS handshake (`accept_proxy_protocol`), only honoured
//! from the listed sources; and two instances behind real HAProxy.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;
use frontdoor::proxy_protocol as pp;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

fn src_of(b: &CaptureBackend) -> SocketAddr {
    let raw = b.headers().pop().unwrap().header;
    let pp::Decoded::Complete { header, .. } = pp::decode(&raw).unwrap() else {
        panic!()
    };
    header.addrs.unwrap().0
}

fn config(dir: &std::path::Path, from: &str, backend: SocketAddr) -> std::path::PathBuf {
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    accept_proxy_protocol: {{ from: [{from}] }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{backend}\" }}\ntimeouts: {{ handshake: 3s }}\n"
    );
    let p = dir.join(format!("f-{}.yaml", from.len()));
    std::fs::write(&p, cfg).unwrap();
    p
}

async fn tls_after_header(addr: SocketAddr, header: &[u8]) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(header).await?;
    let c = tokio_rustls::TlsConnector::from(client_config(&["imap"], None, Tls::V13));
    let mut s = tokio::time::timeout(
        T,
        c.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await??;
    read_line(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_from_a_listed_source_gives_the_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let fd = Frontdoor::start(&config(dir.path(), "\"127.0.0.1/32\"", imap.addr), 1);
    let real: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    let lb_dst: SocketAddr = "198.51.100.10:443".parse().unwrap();
    let info = pp::ConnInfo {
        src: real,
        dst: lb_dst,
        alpn: None,
        authority: None,
        unique_id: None,
        ssl: None,
        identity: None,
    };
    assert_eq!(
        tls_after_header(fd.addrs[0], &pp::encode_v2(&info, None))
            .await
            .unwrap(),
        "imap ready\r\n"
    );
    assert_eq!(src_of(&imap), real);
    assert_eq!(
        tls_after_header(fd.addrs[0], &pp::encode_v1(real, lb_dst))
            .await
            .unwrap(),
        "imap ready\r\n"
    );
    assert_eq!(src_of(&imap), real);
    assert!(
        fd.wait_event(T, |e| is_close(e)
            && str_field(e, "client") == "203.0.113.7:4242")
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
    // A listed source that sends no header is dropped, not served as a client.
    assert!(tls_after_header(fd.addrs[0], b"").await.is_err());
    assert_eq!(imap.headers().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_from_an_unlisted_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let fd = Frontdoor::start(
        &config(dir.path(), "\"10.0.0.0/8\", \"127.0.0.2\"", imap.addr),
        1,
    );
    let forged: SocketAddr = "203.0.113.66:1".parse().unwrap();
    let info = pp::ConnInfo {
        src: forged,
        dst: fd.addrs[0],
        alpn: None,
        authority: None,
        unique_id: None,
        ssl: None,
        identity: None,
    };
    assert!(tls_after_header(fd.addrs[0], &pp::encode_v2(&info, None))
        .await
        .is_err());
    assert!(imap.headers().is_empty(), "nothing reached the backend");
    // The same source without a header is an ordinary direct client.
    assert_eq!(
        tls_after_header(fd.addrs[0], b"").await.unwrap(),
        "imap ready\r\n"
    );
    assert_eq!(src_of(&imap).ip().to_string(), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_haproxy_tcp_mode_see_the_original_client() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = config(dir.path(), "\"127.0.0.1/32\"", imap.addr);
    let fd1 = Frontdoor::start(&p, 1);
    let fd2 = Frontdoor::start(&p, 1);
    let front = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hcfg = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind {front}\n  default_backend be\nbackend be\n  balance roundrobin\n  server a {} send-proxy-v2\n  server b {} send-proxy-v2\n",
        fd1.addrs[0], fd2.addrs[0]
    );
    let hp = dir.path().join("haproxy.cfg");
    std::fs::write(&hp, hcfg).unwrap();
    let mut haproxy = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&hp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haproxy is installed (CI installs it)");
    // Wait for HAProxy to listen (bounded).
    assert!(
        poll_until_with(T, || async move { TcpStream::connect(front).await.is_ok() }).await,
        "haproxy did not start"
    );
    imap.seen.lock().unwrap().clear();
    for _ in 0..4 {
        // Connect from 127.0.0.3 so the original client differs from HAProxy's address.
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let tcp = sock.connect(front).await.unwrap();
        let me = tcp.local_addr().unwrap();
        let c = tokio_rustls::TlsConnector::from(client_config(&["imap"], None, Tls::V13));
        let mut s = c
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(read_line(&mut s).await.unwrap(), "imap ready\r\n");
        assert_eq!(src_of(&imap), me);
    }
    let from_client =
        |e: &serde_json::Value| is_close(e) && str_field(e, "client").starts_with("127.0.0.3:");
    assert!(
        fd1.wait_event(T, from_client).await.is_some(),
        "instance 1 served: {}",
        fd1.logs()
    );
    assert!(
        fd2.wait_event(T, from_client).await.is_some(),
        "instance 2 served: {}",
        fd2.logs()
    );
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

/// A backend that terminates TLS itself, with its own certificate, and
/// echoes; it records the raw bytes it first received.
async fn tls_backend(
    dir: &std::path::Path,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let (c, k) = write_cert(dir, "web", &["www.example.org"]);
    let chain = rustls_pemfile::certs(&mut &std::fs::read(&c).unwrap()[..])
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pemfile::private_key(&mut &std::fs::read(&k).unwrap()[..])
        .unwrap()
        .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let first = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let f2 = first.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let mut peek = vec![0u8; 4096];
            let n = s.peek(&mut peek).await.unwrap_or(0);
            *f2.lock().unwrap() = peek[..n].to_vec();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut t) = acceptor.accept(s).await {
                    let _ = t.write_all(b"web backend ready\r\n").await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut t, &mut buf).await {
                        if n == 0 || t.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_route_delivers_the_untouched_tls_stream() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let (web, first) = tls_backend(dir.path()).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  web: {{ alpn: [h2, \"http/1.1\"], backend: \"{web}\", mode: passthrough, proxy_protocol: none }}\n",
        imap.addr
    );
    let p = dir.path().join("pt.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    // The exact bytes a client sends first: its ClientHello.
    let mut cc = rustls::ClientConnection::new(
        client_config(&["h2", "http/1.1"], None, Tls::V13),
        ServerName::try_from("www.example.org").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    cc.write_tls(&mut hello).unwrap();
    let mut raw = TcpStream::connect(fd.addrs[0]).await.unwrap();
    raw.write_all(&hello).await.unwrap();
    poll_until_async(T, || !first.lock().unwrap().is_empty()).await;
    assert_eq!(
        *first.lock().unwrap(),
        hello,
        "byte-identical ClientHello at the backend"
    );
    drop(raw);
    // A whole session: the backend's own certificate, echo through.
    let mut s = connect_with(
        fd.addrs[0],
        client_config(&["http/1.1"], None, Tls::V13),
        "www.example.org",
    )
    .await
    .unwrap();
    let der = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert!(
        String::from_utf8_lossy(&der).contains("www.example.org"),
        "the backend's certificate"
    );
    assert_eq!(read_line(&mut s).await.unwrap(), "web backend ready\r\n");
    s.write_all(b"ping\r\n").await.unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "ping\r\n");
    // Mail ALPN on the same port is still terminated by frontdoor.
    let mut m = connect(fd.addrs[0], &["imap", "h2"], "www.example.org")
        .await
        .unwrap();
    assert_eq!(read_line(&mut m).await.unwrap(), "imap ready\r\n");
    let der = m.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert!(
        !String::from_utf8_lossy(&der).contains("www.example.org"),
        "frontdoor's own certificate"
    );
}
