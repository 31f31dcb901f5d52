//! Hostile clients and broken backends: each case checks that the front
//! door answers correctly AND keeps serving a well-behaved client meanwhile.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use frontdoor::proxy_protocol as pp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("f.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

async fn well_behaved(addr: SocketAddr) {
    let t0 = Instant::now();
    let mut c = connect(addr, &["imap"], "localhost")
        .await
        .expect("a normal client is served");
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    c.write_all(b"a1 NOOP\r\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "a1 NOOP\r\n");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "normal client took {:?}",
        t0.elapsed()
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocols_garbage_and_oversized_hellos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(dir.path(), &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\ntimeouts: {{ handshake: 3s }}\n", imap.addr));
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    // TLS 1.0 and 1.1 only: refused by the server.
    for v in ["-tls1", "-tls1_1"] {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &a.to_string(),
                v,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-alpn",
                "imap",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("imap ready"), "{v}: {text}");
        assert!(
            text.contains("alert")
                || text.contains("no protocols available")
                || text.contains("wrong version"),
            "{v}: {text}"
        );
    }
    // An SSLv2-style hello, an oversized record, a record of junk.
    let sslv2 = [
        0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    let mut oversized = vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb];
    oversized.extend(std::iter::repeat_n(0x41u8, 65_535));
    let junk = vec![0x17u8; 300];
    for bytes in [&sslv2[..], &oversized[..], &junk[..]] {
        let mut t = TcpStream::connect(a).await.unwrap();
        let _ = t.write_all(bytes).await;
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match t.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(r.is_ok(), "closed promptly");
        well_behaved(a).await;
    }
    assert!(
        imap.headers().len() == 3,
        "only the well-behaved clients reached the backend"
    );
    assert!(no_panic(fd.events()), "{}", fd.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_dropped_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    // Every client here shares 127.0.0.1: lift the per-address cap
    // (tests/abuse_limits.rs has its own test) to reach the handshake timeout.
    let p = write_config(dir.path(), &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\ntimeouts: {{ handshake: 2s }}\nlimits: {{ per_ip_connections: 5000 }}\n", imap.addr));
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    // 2,000 connections dribbling a ClientHello one byte every 300 ms, or
    // sending nothing.
    let mut tasks = Vec::new();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..2000 {
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let conn = TcpStream::connect(a).await;
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(mut t) = conn else {
                return Duration::ZERO;
            };
            let t0 = Instant::now();
            let hello = [
                0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            let mut buf = [0u8; 64];
            for k in 0..40 {
                if i % 2 == 0
                    && t.write_all(&hello[k % hello.len()..k % hello.len() + 1])
                        .await
                        .is_err()
                {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(300), t.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    _ => {}
                }
            }
            t0.elapsed()
        }));
    }
    // Every slow client is connected before the well-behaved ones come.
    assert!(
        poll_until_async(T, || started.load(std::sync::atomic::Ordering::Relaxed)
            == 2000)
        .await
    );
    for _ in 0..3 {
        well_behaved(a).await;
    }
    for t in tasks {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(5),
            "a slow client was held {held:?}"
        );
    }
    well_behaved(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A backend that floods: greeting, then 256 MiB as fast as it can.
    let flood = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let faddr = flood.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = flood.accept().await {
            tokio::spawn(async move {
                let mut h = [0u8; 16];
                if s.read_exact(&mut h).await.is_err() {
                    return;
                }
                let len = u16::from_be_bytes([h[14], h[15]]) as usize;
                let mut rest = vec![0u8; len];
                let _ = s.read_exact(&mut rest).await;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..4096 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(
        dir.path(),
        &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  smtp: {{ alpn: [smtp], backend: \"{faddr}\" }}\n", imap.addr),
    );
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    let pid = fd.child.id();
    let base = rss_kib(pid);
    let mut stuck = Vec::new();
    for _ in 0..5 {
        let mut c = connect(a, &["smtp"], "localhost").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        stuck.push(c); // never read again
    }
    // sleep-ok: the flood runs this long against readers that never read;
    // what is under test is that memory stays bounded meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib(pid).saturating_sub(base);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB for 5 stalled readers"
    );
    well_behaved(a).await;
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_proxy_header_from_the_client_is_only_payload() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(dir.path(), &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n", imap.addr));
    let fd = Frontdoor::start(&p, 1);
    let forged = pp::encode_v2(
        &pp::ConnInfo {
            src: "198.51.100.1:1".parse().unwrap(),
            dst: "198.51.100.2:2".parse().unwrap(),
            alpn: None,
            authority: None,
            unique_id: None,
            ssl: None,
            identity: Some(pp::IdentityTlvs {
                account: "admin@example.org".into(),
                login: "admin@example.org".into(),
                key_name: "forged".into(),
                fingerprint: [9; 32],
                no_imap_preauth: false,
            }),
        },
        None,
    );
    let mut c = connect(fd.addrs[0], &["imap"], "localhost").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    c.write_all(&forged).await.unwrap();
    let mut echoed = vec![0u8; forged.len()];
    c.read_exact(&mut echoed).await.unwrap();
    assert_eq!(
        echoed, forged,
        "the backend got the client's bytes as payload, after our header"
    );
    let h = imap.headers().pop().unwrap().header;
    let pp::Decoded::Complete { header, .. } = pp::decode(&h).unwrap() else {
        panic!()
    };
    assert!(
        header.identity().is_none(),
        "our header carries no identity for an unauthenticated client"
    );
    assert_eq!(header.addrs.unwrap().0.ip().to_string(), "127.0.0.1");
    drop(c);
    drop(fd);

    // The same on a listener with client auth, from a client with a pinned key:
    // the backend's header carries the registry's identity, the forgery is payload.
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let fp = {
        use base64::Engine;
        use sha2::Digest;
        format!(
            "sha256:{}",
            base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(kp.public_key_der()))
        )
    };
    std::fs::write(
        dir.path().join("keys.yaml"),
        format!("keys:\n  - name: alice-phone\n    fingerprint: \"{fp}\"\n    account: alice@example.org\n    login: alice@example.org\n"),
    )
    .unwrap();
    let p = write_config(
        dir.path(),
        &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\nclient_auth: {{ registry: keys.yaml, unknown_key: reject }}\n", imap.addr),
    );
    let fd = Frontdoor::start(&p, 1);
    let key = ClientCert {
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::try_from(kp.serialize_der()).unwrap(),
    };
    let mut c = connect_with(
        fd.addrs[0],
        client_config(&["imap"], Some(key), Tls::V13),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), "imap ready\r\n");
    c.write_all(&forged).await.unwrap();
    let mut echoed = vec![0u8; forged.len()];
    c.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, forged);
    let h = imap.headers().pop().unwrap().header;
    let pp::Decoded::Complete { header, .. } = pp::decode(&h).unwrap() else {
        panic!()
    };
    let id = header.identity().expect("the pinned identity");
    assert_eq!(id.account, "alice@example.org");
    assert_eq!(id.key_name, "alice-phone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_resetting_and_dead_backends_end_within_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let saddr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    // Reads the header, sends a little, then resets.
    let reset = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = reset.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = reset.accept().await {
            let mut h = [0u8; 256];
            let _ = s.read(&mut h).await;
            let _ = s.write_all(b"* OK partial\r\n").await;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(
        dir.path(),
        &format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\n  smtp: {{ alpn: [smtp], backend: \"{saddr}\" }}\n  silent: {{ alpn: [x-reset], backend: \"{raddr}\", protocol: imap }}\ntimeouts: {{ idle: 2s, connect: 1s }}\n",
            imap.addr
        ),
    );
    let fd = Frontdoor::start(&p, 1);
    let a = fd.addrs[0];
    let t0 = Instant::now();
    let mut s = connect(a, &["smtp"], "localhost").await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
        .await
        .expect("closed by the idle timeout");
    assert!(matches!(r, Ok(0) | Err(_)));
    assert!(
        t0.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    well_behaved(a).await;
    let mut r = connect(a, &["x-reset"], "localhost").await.unwrap();
    assert_eq!(read_line(&mut r).await.unwrap(), "* OK partial\r\n");
    let end = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf))
        .await
        .expect("closed after the reset");
    assert!(matches!(end, Ok(0) | Err(_)));
    assert!(
        fd.wait_event(T, |e| closed_with(e, "idle_timeout")
            && str_field(e, "route") == "smtp")
            .await
            .is_some(),
        "{}",
        fd.logs()
    );
    // A reset ends the connection at once, as a backend error.
    let line = fd
        .wait_event(T, |e| is_close(e) && str_field(e, "route") == "silent")
        .await
        .unwrap_or_else(|| panic!("{}", fd.logs()));
    assert_eq!(str_field(&line, "reason_code"), "backend_error", "{line}");
    well_behaved(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let imap = CaptureBackend::start("imap", Expect::V2).await;
    let p = write_config(dir.path(), &format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: {{ alpn: [imap], backend: \"{}\" }}\ntimeouts: {{ handshake: 30s }}\n", imap.addr));
    // A low descriptor limit for the server only (the kit's flags reach
    // the binary as the script's arguments).
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "ulimit -n 40 && exec {} serve --config {} \"$@\"",
            Frontdoor::bin(),
            p.display()
        ))
        .arg("sh");
    let fd = Frontdoor::launch(Launch::command(sh), 1);
    let addr = fd.addrs[0];
    // Hold more connections than the server has descriptors (they stall in the handshake).
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The server runs out of descriptors: its accept fails and backs off.
    let failed = fd
        .wait_event(T, |e| at(e, "WARN") && e.get("backoff_ms").is_some())
        .await
        .unwrap_or_else(|| panic!("no accept failure:\n{}", fd.logs()));
    assert!(
        str_field(&failed, "error").contains("open files"),
        "{failed}"
    );
    let pid = fd.child.id();
    let c0 = cpu_ticks(pid);
    // sleep-ok: the window the CPU use is measured over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - c0;
    assert!(
        used < 50,
        "the accept loop must not spin: {used} ticks in 2 s"
    );
    drop(held);
    // Descriptors free up: served again (retried until they do).
    assert!(
        poll_until_with(Duration::from_secs(15), || async move {
            match connect(addr, &["imap"], "localhost").await {
                Ok(mut c) => read_line(&mut c).await.is_ok_and(|l| l == "imap ready\r\n"),
                Err(_) => false,
            }
        })
        .await,
        "{}",
        fd.logs()
    );
}
