//! Zero downtime: binary upgrades with `serve --takeover` (the listening
//! sockets pass to the new process over the control socket) and reloads,
//! under clients that never pause; the drain's spread of closes; and a
//! successor that fails before it is ready, which leaves the old process
//! serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;

fn add_account(data: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut add = Command::new(BIN)
        .args(["accounts", "add", user, "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn embedded(data: &Path, takeover: bool) -> Launch {
    let l = Launch::new(["serve", "--data-dir"])
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0");
    if takeover {
        l.arg("--takeover")
    } else {
        l
    }
}

/// Wait (bounded) for `p` to exit; its exit status.
fn exited(p: &mut Process, within: Duration) -> std::process::ExitStatus {
    let mut st = None;
    assert!(
        poll_until(within, || {
            st = p.child.try_wait().unwrap();
            st.is_some()
        }),
        "the old process did not exit within {within:?}:\n{}",
        p.log.text()
    );
    st.unwrap()
}

fn reloaded(e: &serde_json::Value) -> bool {
    str_field(e, "message") == "configuration reloaded"
}

#[test]
fn reloads_and_upgrades_refuse_nothing_and_deliver_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut p = embedded(&data, false).start();
    let addr = p.frontdoor_addrs()[0];
    add_account(&data, "alice@localhost", "a long enough password");
    // Short drains, so that each upgrade is over in seconds.
    let cfg = data.join("frontdoor.yaml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let write = |n: usize| {
        let text = format!("{base}timeouts:\n  shutdown_grace: 4s\n  drain_spread: 1s\nlimits:\n  per_ip_connections: {}\n", 900 + n);
        std::fs::write(cfg.with_extension("tmp"), text).unwrap();
        std::fs::rename(cfg.with_extension("tmp"), &cfg).unwrap();
    };
    write(0);
    p.signal("HUP");
    assert!(
        p.log.wait_event_sync(T, reloaded).is_some(),
        "{}",
        p.log.text()
    );

    let stop = dir.path().join("stop");
    let clients = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/upgrade/client_loop.py"
        ))
        .arg(addr.port().to_string())
        .args(["alice@localhost", "a long enough password"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reloads = 0;
    let mut upgrades = 0;
    for round in 0..5 {
        for _ in 0..2 {
            reloads += 1;
            write(reloads);
            let before = p.log.count(reloaded);
            p.signal("HUP");
            assert!(
                p.log
                    .wait_event_sync(T, |_| p.log.count(reloaded) > before)
                    .is_some(),
                "reload {reloads}:\n{}",
                p.log.text()
            );
        }
        let next = embedded(&data, true)
            .within(Duration::from_secs(60))
            .start();
        upgrades += 1;
        assert_eq!(
            next.frontdoor_addrs(),
            vec![addr],
            "round {round}: the same socket"
        );
        let mut old = std::mem::replace(&mut p, next);
        let st = exited(&mut old, Duration::from_secs(30));
        assert!(
            st.success(),
            "the old process exited with {st}:\n{}",
            old.log.text()
        );
        assert!(no_panic(&old.log), "{}", old.log.text());
        assert!(p
            .log
            .wait_event_sync(T, |e| str_field(e, "message") == "the predecessor drains")
            .is_some());
        // The clients get work done through the new process before the
        // next round: mail sessions it relayed to their end.
        let done = |alpn: &str| p.log.count(|e| is_close(e) && str_field(e, "alpn") == alpn);
        assert!(
            poll_until(Duration::from_secs(20), || done("imap") >= 10
                && done("smtp") >= 5),
            "round {round}: no progress:\n{}",
            p.log.text()
        );
    }
    std::fs::write(&stop, b"").unwrap();
    let out = clients.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "reloads {reloads}, upgrades {upgrades}, connections {}",
        r["stats"]
    );
    assert_eq!(r["failures"], serde_json::json!([]), "{r}");
    for k in ["imap", "smtp", "https"] {
        assert!(r["stats"][k].as_u64().unwrap() > 10, "too few {k}: {r}");
    }
    // Every acknowledged message is in the INBOX exactly once.
    let inbox: Vec<&str> = r["inbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in r["acked"].as_array().unwrap() {
        let s = s.as_str().unwrap();
        assert_eq!(
            inbox.iter().filter(|x| **x == s).count(),
            1,
            "{s} in {inbox:?}"
        );
    }
    assert_eq!(inbox.len(), r["acked"].as_array().unwrap().len());
}

/// A config file for the front door alone: one listener on `bind` to a
/// capture backend, with the given timeouts and control socket.
fn front_config(
    dir: &Path,
    bind: &str,
    backend: SocketAddr,
    timeouts: &str,
    extra: &str,
) -> PathBuf {
    let (c, k) = write_cert(dir, "server", &["localhost"]);
    let text = format!(
        "listeners:\n  - bind: \"{bind}\"\n    default_route: web\n{extra}tls:\n  certificates:\n    - cert: {}\n      key: {}\nroutes:\n  web:\n    alpn: [\"http/1.1\"]\n    backend: \"{backend}\"\n    proxy_protocol: none\ntimeouts: {timeouts}\nlimits:\n  per_ip_connections: 5000\ncontrol:\n  socket: {}\n",
        c.display(),
        k.display(),
        dir.join("control.sock").display()
    );
    let p = dir.join("frontdoor.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_close_over_the_spread_while_a_successor_takes_over() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let backend = CaptureBackend::start("idle", Expect::None).await;
    let cfg = front_config(
        dir.path(),
        "127.0.0.1:0",
        backend.addr,
        "{ shutdown_grace: 8s, drain_spread: 4s }",
        "",
    );
    let mut old = Launch::new(["serve", "--config"]).arg(&cfg).start();
    let addr = old.frontdoor_addrs()[0];
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let (c, greeting) = {
            let mut c = connect(addr, &[], "localhost").await.unwrap();
            let g = read_line(&mut c).await.unwrap();
            (c, g)
        };
        assert_eq!(greeting, "idle ready\r\n");
        conns.push(c);
    }
    // Each connection waits for its close and says when it came.
    let t0 = Instant::now();
    let mut waits = Vec::with_capacity(N);
    for mut c in conns {
        waits.push(tokio::spawn(async move {
            let mut b = [0u8; 16];
            let r = tokio::time::timeout(Duration::from_secs(30), c.read(&mut b)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "closed, not data: {r:?}"
            );
            Instant::now()
        }));
    }
    let new = Launch::new(["serve", "--config"])
        .arg(&cfg)
        .arg("--takeover")
        .start();
    assert_eq!(new.frontdoor_addrs(), vec![addr]);
    let handed = old
        .log
        .wait_event(T, |e| {
            str_field(e, "message").starts_with("successor ready")
        })
        .await;
    assert!(handed.is_some(), "{}", old.log.text());
    let drain_start = Instant::now();
    // While the old one drains, new connections are the new one's.
    for _ in 0..20 {
        let mut c = connect(addr, &[], "localhost").await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), "idle ready\r\n");
    }
    let mut closes = Vec::with_capacity(N);
    for w in waits {
        closes.push(w.await.unwrap().saturating_duration_since(drain_start));
    }
    assert!(t0 < drain_start);
    closes.sort();
    let secs: Vec<f64> = closes.iter().map(Duration::as_secs_f64).collect();
    let pct = |p: usize| secs[(N - 1) * p / 100];
    println!(
        "closes after the drain began: min {:.2}s p10 {:.2}s p50 {:.2}s p90 {:.2}s max {:.2}s",
        secs[0],
        pct(10),
        pct(50),
        pct(90),
        secs[N - 1]
    );
    // Spread over the 4 s (each waits its moment, then a quiet second
    // the idle connections already have): each second holds about a
    // quarter, none all of them, and all are closed before the grace ends.
    let mut quarters = [0usize; 4];
    for s in &secs {
        quarters[(*s as usize).min(3)] += 1;
    }
    for q in quarters {
        assert!((150..350).contains(&q), "not spread: {quarters:?}");
    }
    assert!(secs[N - 1] < 5.5, "last close {:.2}s", secs[N - 1]);
    let st = exited(&mut old, Duration::from_secs(20));
    assert!(st.success());
    let forced = old
        .log
        .count(|e| str_field(e, "message").contains("grace period over"));
    assert_eq!(forced, 0, "none waited for the grace's end");
    assert_eq!(new.frontdoor_addrs(), vec![addr]);
}

/// Take the sockets as a successor would, then die without `READY`.
const DIE_BEFORE_READY: &str = r#"
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"TAKEOVER 1\n")
msg, fds, _, _ = socket.recv_fds(s, 65536, 64)
doc = json.loads(msg.decode())
print(len(doc["sockets"]), len(fds))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_fails_before_readiness_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let backend = CaptureBackend::start("old", Expect::None).await;
    let cfg = front_config(
        dir.path(),
        "127.0.0.1:0",
        backend.addr,
        "{ shutdown_grace: 2s }",
        "",
    );
    let old = Launch::new(["serve", "--config"]).arg(&cfg).start();
    let addr = old.frontdoor_addrs()[0];
    let serves = || async move {
        let mut c = connect(addr, &[], "localhost").await.unwrap();
        read_line(&mut c).await.unwrap() == "old ready\r\n"
    };

    // 1. A process that takes the sockets and dies before READY.
    let out = Command::new("python3")
        .arg("-c")
        .arg(DIE_BEFORE_READY)
        .arg(dir.path().join("control.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 1",
        "one socket described and passed"
    );
    assert!(old
        .log
        .wait_event(T, |e| str_field(e, "message")
            .starts_with("takeover aborted"))
        .await
        .is_some());
    assert!(serves().await);

    // 2. The real binary with a configuration it cannot serve: a second
    // listener on an address in use. It exits before readiness.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    default_route: web\n",
        &format!(
            "    default_route: web\n  - bind: \"{}\"\n    default_route: web\n",
            busy.local_addr().unwrap()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let failed = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--takeover")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("cannot listen on"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(
        old.log
            .wait_event(T, |_| old
                .log
                .count(|e| str_field(e, "message").starts_with("takeover aborted"))
                >= 2)
            .await
            .is_some(),
        "{}",
        old.log.text()
    );
    assert!(serves().await, "the old process still serves");
    assert!(no_panic(&old.log));
}
