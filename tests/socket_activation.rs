//! systemd socket activation: the listening socket comes from the service
//! manager (`LISTEN_FDS`), here from systemd's own `systemd-socket-activate`,
//! which binds the address, waits for the first connection and only then
//! starts frontdoor with the socket. The connection that woke it is served.

mod common;

use std::process::Command;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activating_connection_is_served_on_the_inherited_socket() {
    let dir = tempfile::tempdir().unwrap();
    let backend = CaptureBackend::start("activated", Expect::None).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (c, k) = write_cert(dir.path(), "server", &["localhost"]);
    let cfg = dir.path().join("frontdoor.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n  - bind: \"{addr}\"\n    default_route: web\ntls:\n  certificates:\n    - cert: {}\n      key: {}\nroutes:\n  web:\n    alpn: [\"http/1.1\"]\n    backend: \"{}\"\n    proxy_protocol: none\ncontrol:\n  socket: {}\n",
            c.display(),
            k.display(),
            backend.addr,
            dir.path().join("control.sock").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg(format!("--listen={addr}"))
        .arg(BIN)
        .args(["serve", "--config"])
        .arg(&cfg);
    // The socket exists before frontdoor does: the first connection is
    // queued on it, and starts frontdoor.
    let launcher = std::thread::spawn(move || Launch::command(cmd).start());
    let mut tcp = None;
    assert!(
        poll_until_async(T, || {
            tcp = std::net::TcpStream::connect(addr).ok();
            tcp.is_some()
        })
        .await,
        "systemd-socket-activate did not listen"
    );
    let p = tokio::task::spawn_blocking(move || launcher.join().unwrap())
        .await
        .unwrap();
    assert_eq!(p.frontdoor_addrs(), vec![addr]);
    let inherited = p
        .log
        .event(|e| str_field(e, "message") == "listening socket inherited");
    assert!(inherited.is_some(), "{}", p.log.text());
    assert_eq!(
        str_field(&inherited.unwrap(), "key"),
        format!("frontdoor:{addr}#0")
    );
    assert!(p
        .log
        .event(|e| str_field(e, "message") == "sockets passed by systemd")
        .is_some());
    // The connection made before frontdoor ran gets its TLS handshake and
    // its backend.
    let tcp = tokio::net::TcpStream::from_std({
        let t = tcp.unwrap();
        t.set_nonblocking(true).unwrap();
        t
    })
    .unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(&[], None, Tls::V13));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio::time::timeout(T, tls.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "activated ready\r\n");
    s.write_all(b"hello\r\n").await.unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "hello\r\n");
    // And so does the next one.
    let mut c2 = connect(addr, &[], "localhost").await.unwrap();
    assert_eq!(read_line(&mut c2).await.unwrap(), "activated ready\r\n");
}
