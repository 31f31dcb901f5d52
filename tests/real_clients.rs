//! Clients users actually run: Python's `ssl` module and `openssl s_client`,
//! through the real front door to capture backends.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

async fn setup() -> (tempfile::TempDir, Frontdoor, CaptureBackend, CaptureBackend) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = write_cert(dir.path(), "server", &["localhost", "imap.example.org"]);
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let smtp = CaptureBackend::start("smtp", Expect::V2).await;
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    sni_routes: {{ imap.example.org: imap }}\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  smtp: {{ alpn: [smtp], backend: \"{}\" }}\n",
        c.display(),
        k.display(),
        imap.addr,
        smtp.addr
    );
    let p = dir.path().join("f.yaml");
    std::fs::write(&p, cfg).unwrap();
    let fd = Frontdoor::start(&p, 1);
    (dir, fd, imap, smtp)
}

const PY: &str = r#"
import socket, ssl, sys
port, alpn, sni = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if alpn:
    ctx.set_alpn_protocols([alpn])
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        f = s.makefile("rwb")
        greeting = f.readline().decode()
        f.write(b"a1 NOOP\r\n"); f.flush()
        echo = f.readline().decode()
        print(s.selected_alpn_protocol(), s.version(), greeting.strip(), echo.strip(), sep="|")
"#;

fn python(port: u16, alpn: &str, sni: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .arg(port.to_string())
        .arg(alpn)
        .arg(sni)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ssl_with_alpn_and_with_sni_only() {
    let (_d, fd, imap, _smtp) = setup().await;
    let port = fd.addrs[0].port();
    let p = tokio::task::spawn_blocking(move || python(port, "imap", "localhost"))
        .await
        .unwrap();
    assert_eq!(p, "imap|TLSv1.3|imap ready|a1 NOOP");
    let p = tokio::task::spawn_blocking(move || python(port, "smtp", "localhost"))
        .await
        .unwrap();
    assert_eq!(p, "smtp|TLSv1.3|smtp ready|a1 NOOP");
    let p = tokio::task::spawn_blocking(move || python(port, "", "imap.example.org"))
        .await
        .unwrap();
    assert_eq!(p, "None|TLSv1.3|imap ready|a1 NOOP");
    assert_eq!(imap.headers().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_alpn_imap() {
    let (_d, fd, imap, _smtp) = setup().await;
    let port = fd.addrs[0].port();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-alpn",
                "imap",
                "-servername",
                "localhost",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        let mut stdin = child.stdin.take().unwrap();
        let seen = Log::collect(child.stdout.take().unwrap());
        stdin.write_all(b"a1 LOGOUT\r\n").unwrap();
        // Close our side once the echo is back (s_client prints it).
        let echoed = poll_until(T, || seen.text().contains("a1 LOGOUT"));
        drop(stdin);
        let _ = child.wait();
        // The reader thread takes the rest once openssl has exited.
        poll_until(T, || seen.text().contains("imap ready"));
        assert!(echoed, "no echo: {}", seen.text());
        seen.text()
    })
    .await
    .unwrap();
    let stdout = out;
    assert!(stdout.contains("ALPN protocol: imap"), "{stdout}");
    assert!(stdout.contains("imap ready"), "{stdout}");
    assert!(stdout.contains("a1 LOGOUT"), "{stdout}");
    assert_eq!(imap.headers().len(), 1);
    // TLS 1.2 works too.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-alpn",
            "smtp",
            "-tls1_2",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Protocol  : TLSv1.2") || stdout.contains("TLSv1.2"),
        "{stdout}"
    );
    assert!(stdout.contains("ALPN protocol: smtp"), "{stdout}");
}
