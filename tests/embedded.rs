//! The embedded default: `frontdoor serve` with no config on a fresh
//! directory is a working relay on a port that needs no root.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `serve --data-dir D --listen A`; ready once the front door listens.
fn start(dir: &std::path::Path, port: u16) -> Frontdoor {
    let fd = Frontdoor::launch(
        Launch::new(["serve", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir),
        1,
    );
    assert_eq!(fd.addrs[0].port(), port, "--listen is the listener");
    fd
}

const SEND: &str = r#"
import smtplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["smtp"])
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as s:
    s.login(user, password)
    s.sendmail(user, [user], f"From: {user}\r\nTo: {user}\r\nSubject: hello\r\n\r\nfrom the embedded default\r\n")
print("sent")
"#;

#[test]
fn fresh_directory_becomes_a_working_relay_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start(dir.path(), port);
    let data = dir.path().join("data");
    for f in [
        "frontdoor.yaml",
        "keys.yaml",
        "tls/localhost.crt",
        "tls/localhost.key",
        "submission.sock",
    ] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    // Printed for the operator on stderr (guidance, not a log event).
    assert!(
        child.events().text().contains("Next steps:"),
        "{}",
        child.logs()
    );
    // The written config validates as it is.
    let out = Command::new(Frontdoor::bin())
        .args(["check", "--config"])
        .arg(data.join("frontdoor.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The status page.
    let page = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&page.stdout).contains("<h1>Mail server</h1>"));
    // An account, then a message through SMTP submission on ALPN smtp.
    let mut add = Command::new(Frontdoor::bin())
        .args(["accounts", "add", "alice@localhost", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(SEND)
        .arg(port.to_string())
        .arg("alice@localhost")
        .arg("a long enough password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent");
    drop(child);
    // A second start reuses the directory: same certificate, same config.
    let crt = std::fs::read(data.join("tls/localhost.crt")).unwrap();
    let cfg = std::fs::read(data.join("frontdoor.yaml")).unwrap();
    let port2 = free_port();
    let _child = start(dir.path(), port2);
    assert_eq!(std::fs::read(data.join("tls/localhost.crt")).unwrap(), crt);
    assert_eq!(std::fs::read(data.join("frontdoor.yaml")).unwrap(), cfg);
    let page = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port2}/")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&page.stdout).contains(&format!("127.0.0.1:{port2}")),
        "--listen overrides the written bind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_of_a_missing_account_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fd = start(dir.path(), port);
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(Frontdoor::bin()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let d = data.to_str().unwrap();
    let keys = dir.path().join("keys");
    run(&[
        "keys",
        "gen",
        "--name",
        "bob-phone",
        "--out",
        keys.to_str().unwrap(),
        "--type",
        "p256",
    ]);
    let crt = keys.join("bob-phone.crt");
    run(&[
        "keys",
        "add",
        "--data-dir",
        d,
        "--name",
        "bob-phone",
        "--account",
        "bob@localhost",
        "--login",
        "bob@localhost",
        crt.to_str().unwrap(),
    ]);
    let cert = ClientCert {
        chain: rustls_pemfile::certs(&mut &std::fs::read(&crt).unwrap()[..])
            .map(|c| c.unwrap())
            .collect(),
        key: rustls_pemfile::private_key(
            &mut &std::fs::read(keys.join("bob-phone.key")).unwrap()[..],
        )
        .unwrap()
        .unwrap(),
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The registry reloads within a second; until then the key is unknown
    // (anonymous). Once pinned, its account does not exist yet: refused
    // without a greeting, and the close line says why.
    let refused = |e: &serde_json::Value| {
        closed_with(e, "account_missing") && str_field(e, "key") == "bob-phone"
    };
    let c2 = cert.clone();
    let events = fd.events().clone();
    assert!(
        poll_until_with(T, || {
            let (c, events) = (c2.clone(), events.clone());
            async move {
                let cfg = client_config(&["smtp"], Some(c), Tls::V13);
                let Ok(mut s) = connect_with(addr, cfg, "localhost").await else {
                    return false;
                };
                let line = read_line(&mut s).await.unwrap_or_default();
                drop(s);
                // The close line is written before the close, but read from
                // the pipe by another thread: wait for it (bounded).
                line.is_empty() && events.wait_event(T, refused).await.is_some()
            }
        })
        .await,
        "{}",
        fd.logs()
    );
    // Once the account exists, the same key is greeted.
    let mut add = Command::new(Frontdoor::bin())
        .args(["accounts", "add", "bob@localhost", "--data-dir", d])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"another long password\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let mut s = connect_with(
        addr,
        client_config(&["smtp"], Some(cert), Tls::V13),
        "localhost",
    )
    .await
    .unwrap();
    assert!(read_line(&mut s).await.unwrap().starts_with("220 "));
}
