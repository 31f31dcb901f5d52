//! The inbound MX and its peers: in chatmail mode a plaintext MAIL FROM is
//! refused until STARTTLS (`mail.mx.require_tls`, Python's smtplib as the
//! peer), and each client address gets at most
//! `mail.mx.max_connections_per_peer` sessions (`421` beyond, a slot free
//! again once one closes).

mod common;
mod mail_common;

use std::process::Command;
use std::time::Duration;

use common::poll_until;
use mail_common::*;

/// MAIL FROM in plaintext, then STARTTLS and MAIL FROM again; prints each
/// reply as `CODE TEXT`.
const TLS_RULE: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("peer.example.net")
print("EHLO-STARTTLS", s.has_extn("starttls"))
code, text = s.mail("someone@example.net")
print("PLAIN", code, text.decode())
s.rset()
s.starttls(context=ctx)
s.ehlo("peer.example.net")
code, text = s.mail("someone@example.net")
print("TLS", code, text.decode())
s.quit()
"#;

fn run_py(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chatmail_mx(mx: &str) -> Server {
    Server::new(Opts {
        inbound: true,
        mx_cert: true,
        extra: format!("  chatmail: {{}}\n  dns: {{ resolvers: [\"127.0.0.1:9\"] }}\n{mx}"),
        ..Opts::default()
    })
}

#[test]
fn chatmail_mx_requires_starttls_before_mail() {
    let srv = chatmail_mx("");
    let port = srv.inbound.unwrap().port().to_string();
    let ca = srv.dir.path().join("mx.crt").display().to_string();
    let out = run_py(TLS_RULE, &[port, ca]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "EHLO-STARTTLS True",
            "PLAIN 530 5.7.0 Must issue a STARTTLS command first",
            "TLS 250 2.1.0 Ok",
        ],
        "{}",
        srv.logs()
    );
    // The log arrives through a pipe read by another thread: wait for the
    // line (bounded), then count.
    let refusal = |e: &serde_json::Value| {
        common::str_field(e, "message") == "plaintext MAIL refused: mail.mx.require_tls"
    };
    let log = &srv.process().log;
    assert!(
        log.wait_event_sync(Duration::from_secs(10), refusal)
            .is_some(),
        "{}",
        srv.logs()
    );
    assert_eq!(log.count(refusal), 1, "{}", srv.logs());

    // The operator may allow plaintext peers.
    let open = chatmail_mx("  mx: { require_tls: false }\n");
    let port = open.inbound.unwrap().port().to_string();
    let ca = open.dir.path().join("mx.crt").display().to_string();
    let out = run_py(TLS_RULE, &[port, ca]);
    assert!(out.contains("PLAIN 250 2.1.0 Ok"), "{out}");

    // Outside chatmail mode plaintext stays allowed by default.
    let plain = Server::new(Opts {
        inbound: true,
        ..Opts::default()
    });
    let mut c = Client::open(plain.inbound.unwrap(), None);
    c.cmd("EHLO peer.example.net");
    assert_eq!(c.cmd("MAIL FROM:<someone@example.net>").0, 250);
}

#[test]
fn mx_limits_sessions_per_client_address() {
    let srv = chatmail_mx("  mx: { max_connections_per_peer: 2 }\n");
    let mx = srv.inbound.unwrap();
    let a = Client::open(mx, None);
    let _b = Client::open(mx, None);
    let mut c = Client::connect(mx, None);
    let (code, text) = c.reply();
    assert_eq!(
        (code, text.trim()),
        (
            421,
            "421 4.7.0 Too many connections from your address, try again later"
        ),
        "{}",
        srv.logs()
    );
    assert!(c.closed_silently(), "closed after the refusal");
    let ev = srv
        .process()
        .log
        .wait_event_sync(Duration::from_secs(10), |e| {
            common::str_field(e, "refused") == "peer_limit"
        })
        .unwrap_or_else(|| panic!("no refusal event: {}", srv.logs()));
    assert_eq!(
        common::str_field(&ev, "client").split(':').next(),
        Some("127.0.0.1")
    );
    // Another address of the loopback net is another peer.
    let from_other = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        sock.connect_timeout(&mx.into(), Duration::from_secs(5))
            .unwrap();
        let s: std::net::TcpStream = sock.into();
        s
    };
    let mut o = Client::from_stream(from_other);
    assert_eq!(o.reply().0, 220, "127.0.0.2 has its own count");
    // Once a session ends its slot is free again (the count drops when
    // the server notices the close: poll, bounded).
    drop(a);
    let freed = poll_until(Duration::from_secs(10), || {
        let mut n = Client::connect(mx, None);
        n.reply().0 == 220
    });
    assert!(freed, "{}", srv.logs());
}

#[test]
fn bad_mx_keys_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("frontdoor.yaml");
    std::fs::write(
        &cfg,
        "mail:\n  domains: [example.org]\n  mx: { max_connections_per_peer: 0, require_tls: maybe }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("mail.mx"), "{err}");
    std::fs::write(
        &cfg,
        "mail:\n  domains: [example.org]\n  mx: { max_connections_per_peer: 0 }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("mail.mx.max_connections_per_peer") && err.contains("must be at least 1"),
        "{err}"
    );
}
