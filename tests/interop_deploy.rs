//! The shipped `deploy/` snippets against real Dovecot 2.3 and Postfix 3.7:
//! the doors that trust frontdoor open for frontdoor alone.
//!
//! Dovecot and Postfix run with `deploy/dovecot/*.conf`,
//! `deploy/postfix/{main,master}.cf` and `deploy/nftables/frontdoor.nft` as
//! shipped (`interop::MailStack::start_deploy`). frontdoor, the real binary,
//! runs as uid [`FD_UID`] with group `postdrop`, as `deploy/postfix/master.cf`
//! tells the operator to set it up. Another local process, uid 65534, tries
//! to go around it: a forged PROXY header with a pinned key's CN to
//! Dovecot, XCLIENT on Postfix's sockets. Real clients (Python's
//! imaplib/smtplib with a client certificate) come through frontdoor from a
//! routable address and from 127.0.0.1.
//!
//! Each test runs in a network namespace of its own: it starts its own test
//! binary again under `unshare --net`, so the fixed port 1143, the extra
//! addresses on `lo` and the nftables rules touch nothing of the host. Needs
//! root, `unshare`/`setpriv` (util-linux), `ip` (iproute2) and `nft`
//! (nftables), as CI has.

mod common;
mod interop;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{write_cert, Frontdoor};
use interop::{chmod, gid_of, python, MailStack, DEPLOY};

/// frontdoor's uid in these tests (no name needed: the nftables rule gets
/// the number where the shipped file says "frontdoor").
const FD_UID: u32 = 64_901;
/// The other local user.
const INTRUDER_UID: u32 = 65_534;
/// A routable client address (TEST-NET-1), put on `lo` in the namespace.
const CLIENT_IP: &str = "192.0.2.1";
const LOG_WAIT: Duration = Duration::from_secs(30);
const NETNS_ENV: &str = "FRONTDOOR_TEST_IN_NETNS";
const NEED: &str = "apt-get install -y nftables iproute2 util-linux";

/// Run test `name` again in a fresh network namespace and check that it
/// passed there. Returns true when this *is* that run (then the caller does
/// the work), false in the outer run.
fn in_own_netns(name: &str) -> bool {
    if std::env::var_os(NETNS_ENV).is_some() {
        let up: [&[&str]; 2] = [
            &["link", "set", "lo", "up"],
            &["addr", "add", "192.0.2.1/32", "dev", "lo"],
        ];
        for args in up {
            let st = Command::new("ip")
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("ip: {e} ({NEED})"));
            assert!(st.success(), "ip {args:?} failed");
        }
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e} ({NEED}; the test must run as root)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in its network namespace failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// A command run as `uid` with only the given supplementary groups.
fn as_user(uid: u32, groups: &[u32], program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.arg(format!("--groups={}", g.join(",")));
    }
    c.arg("--").arg(program);
    c
}

/// What the other local user gets when it talks to a backend itself
/// (tests/interop/forge.py, run by Debian's python3 as uid 65534).
fn intruder(dir: &Path, uid: u32, groups: &[u32], args: &[&str]) -> String {
    let script = dir.join("forge.py");
    if !script.exists() {
        std::fs::write(&script, include_str!("interop/forge.py")).unwrap();
        chmod(&script, 0o644);
    }
    let out = as_user(uid, groups, Path::new("/usr/bin/python3"))
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("setpriv: {e} ({NEED})"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.starts_with('{'),
        "forge.py {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Load `deploy/nftables/FILE` with frontdoor's uid as a number.
fn load_firewall(dir: &Path, file: &str) {
    let shipped = std::fs::read_to_string(format!("{DEPLOY}/nftables/{file}")).unwrap();
    let rules = shipped.replace(
        "meta skuid != \"frontdoor\"",
        &format!("meta skuid != {FD_UID}"),
    );
    assert_ne!(
        rules, shipped,
        "deploy/nftables/{file} no longer matches on skuid \"frontdoor\""
    );
    let path = dir.join(file);
    std::fs::write(&path, rules).unwrap();
    let out = Command::new("nft")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("nft: {e} ({NEED})"));
    assert!(
        out.status.success(),
        "nft -f {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Setup {
    stack: MailStack,
    fd: Frontdoor,
    ca: String,
    cert: String,
    key: String,
    /// The ALPN listener (imap → Dovecot, smtp → Postfix XCLIENT service).
    port: u16,
    /// The fixed-route listener for Postfix's PROXY service.
    proxy_port: u16,
}

/// The deploy stack and frontdoor as uid [`FD_UID`] (group postdrop), with a
/// pinned key for alice whose certificate's own CN says "mallory".
fn setup() -> Setup {
    let stack = MailStack::start_deploy();
    let dir = stack.path().join("frontdoor");
    std::fs::create_dir(&dir).unwrap();
    let (c, k) = write_cert(&dir, "server", &["mail.example.org"]);
    let key = client_key(&dir);
    std::fs::write(
        dir.join("keys.yaml"),
        format!(
            "keys:\n  - name: alice-laptop\n    fingerprint: \"{}\"\n    account: alice\n    login: alice@example.org\n    imap_preauth: false\n",
            key.2
        ),
    )
    .unwrap();
    let cfg = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
  - bind: "127.0.0.1:0"
    route: submission
tls:
  certificates:
    - cert: {c}
      key: {k}
routes:
  imap:
    alpn: [imap]
    backend: "127.0.0.1:1143"
    proxy_protocol: v2
  smtp:
    alpn: [smtp]
    backend: "unix:{xclient}"
    proxy_protocol: none
    identity: xclient
  submission:
    backend: "unix:{proxied}"
    proxy_protocol: v2
client_auth:
  registry: {dir}/keys.yaml
  unknown_key: anonymous
"#,
        c = c.display(),
        k = k.display(),
        xclient = stack.postfix_socket("frontdoor-xclient").display(),
        proxied = stack.postfix_socket("frontdoor-submission").display(),
        dir = dir.display(),
    );
    let cfg_path = dir.join("frontdoor.yaml");
    std::fs::write(&cfg_path, cfg).unwrap();
    // frontdoor's own copy of its binary and files, as a packaged install has.
    let bin = dir.join("frontdoor");
    std::fs::copy(Frontdoor::bin(), &bin).unwrap();
    chmod(&bin, 0o755);
    for e in std::fs::read_dir(&dir).unwrap() {
        std::os::unix::fs::chown(e.unwrap().path(), Some(FD_UID), Some(FD_UID)).unwrap();
    }
    std::os::unix::fs::chown(&dir, Some(FD_UID), Some(FD_UID)).unwrap();
    chmod(&dir, 0o750);
    let fd = Frontdoor::start_command(as_user(FD_UID, &[gid_of("postdrop")], &bin), &cfg_path, 2);
    let (port, proxy_port) = (fd.addrs[0].port(), fd.addrs[1].port());
    // The client's files are the test's (root's), not frontdoor's.
    let cdir = stack.path().join("client");
    std::fs::create_dir(&cdir).unwrap();
    std::fs::copy(dir.join("server.crt"), cdir.join("ca.crt")).unwrap();
    let s = |p: PathBuf| p.display().to_string();
    Setup {
        ca: s(cdir.join("ca.crt")),
        cert: s(key.0),
        key: s(key.1),
        stack,
        fd,
        port,
        proxy_port,
    }
}

/// (certificate, key, fingerprint) of a fresh client key.
fn client_key(dir: &Path) -> (PathBuf, PathBuf, String) {
    use base64::Engine;
    use sha2::Digest;
    let kp = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mallory@example.org");
    let cert = params.self_signed(&kp).unwrap();
    let fp = format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(kp.public_key_der()))
    );
    let (c, k) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, kp.serialize_pem()).unwrap();
    (c, k, fp)
}

impl Setup {
    /// Run client.py through frontdoor as root from `src`; (ok, JSON text).
    fn client(&self, port: u16, src: &str, mode: &str, args: &[&str]) -> (bool, String) {
        let port = port.to_string();
        let mut all = vec![mode, "--port", &port, "--src", src, "--ca", &self.ca];
        all.extend_from_slice(args);
        let (ok, out, err) = python(&all);
        assert!(
            !out.trim().is_empty(),
            "client printed nothing; stderr:\n{err}\nfrontdoor:\n{}\n{}",
            self.fd.logs(),
            self.stack.logs()
        );
        (ok, out)
    }

    fn with_key<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--cert", self.cert.as_str(), "--key", self.key.as_str()];
        v.extend_from_slice(args);
        v
    }

    fn count(&self, log: fn(&MailStack) -> String, needle: &str) -> usize {
        log(&self.stack).matches(needle).count()
    }
}

const DOVECOT_TEST: &str = "dovecot_proxy_listener_admits_frontdoor_only";

/// Dovecot's PROXY listener as shipped: without the nftables rule any local
/// user logs in as anyone with a forged CN; with it, uid 65534 is refused
/// before Dovecot reads a byte, and the pinned key through frontdoor still
/// logs in with EXTERNAL.
#[test]
fn dovecot_proxy_listener_admits_frontdoor_only() {
    if !in_own_netns(DOVECOT_TEST) {
        return;
    }
    let s = setup();
    let bob_external = "Login: user=<bob@example.org>, method=EXTERNAL, rip=192.0.2.66";

    // The snippet alone: loopback is trusted, so the forgery works. This is
    // what the rule below is for (and shows the forgery is a real one).
    let out = intruder(
        s.stack.path(),
        INTRUDER_UID,
        &[],
        &["imap", "1143", "bob@example.org"],
    );
    assert!(
        out.contains(r#""auth": ["a OK"#),
        "{out}\n{}",
        s.stack.dovecot_log()
    );
    assert!(
        s.stack
            .wait_log(MailStack::dovecot_log, bob_external, LOG_WAIT),
        "{}",
        s.stack.dovecot_log()
    );

    load_firewall(s.stack.path(), "frontdoor.nft");
    let out = intruder(
        s.stack.path(),
        INTRUDER_UID,
        &[],
        &["imap", "1143", "bob@example.org"],
    );
    assert!(
        out.contains(r#""connect": "error""#) && out.contains("Connection refused"),
        "{out}"
    );

    // The pinned key through frontdoor: EXTERNAL as the registry login,
    // from the client's real address, never the certificate's own CN.
    let (ok, out) = s.client(s.port, CLIENT_IP, "imap", &s.with_key(&["--external"]));
    assert!(ok, "{out}\n{}\n{}", s.fd.logs(), s.stack.logs());
    assert!(
        s.stack.wait_log(
            MailStack::dovecot_log,
            "Login: user=<alice@example.org>, method=EXTERNAL, rip=192.0.2.1",
            LOG_WAIT
        ),
        "{}",
        s.stack.dovecot_log()
    );
    // A password login through frontdoor, from loopback, still works.
    let (ok, out) = s.client(
        s.port,
        "127.0.0.1",
        "imap",
        &["--login", "bob@example.org", "bobpw"],
    );
    assert!(ok, "{out}");
    assert!(
        s.stack.wait_log(
            MailStack::dovecot_log,
            "Login: user=<bob@example.org>, method=PLAIN, rip=127.0.0.1",
            LOG_WAIT
        ),
        "{}",
        s.stack.dovecot_log()
    );
    // Still the one forged login from before the rule, and no mallory.
    assert_eq!(s.count(MailStack::dovecot_log, bob_external), 1);
    assert!(!s.stack.dovecot_log().contains("mallory"));
}

const POSTFIX_TEST: &str = "postfix_sockets_admit_frontdoor_only_and_clients_cannot_xclient";

/// Postfix's services as shipped: uid 65534 cannot open either socket;
/// through frontdoor the pinned key submits as its login, and a client
/// from 127.0.0.1 gets 550 for its own XCLIENT, with or without a key.
#[test]
fn postfix_sockets_admit_frontdoor_only_and_clients_cannot_xclient() {
    if !in_own_netns(POSTFIX_TEST) {
        return;
    }
    let s = setup();
    let xclient_sock = s.stack.postfix_socket("frontdoor-xclient");
    let proxied_sock = s.stack.postfix_socket("frontdoor-submission");

    for sock in [&xclient_sock, &proxied_sock] {
        let sock = sock.display().to_string();
        let out = intruder(
            s.stack.path(),
            INTRUDER_UID,
            &[],
            &["smtp", &sock, "LOGIN=bob@example.org"],
        );
        assert!(
            out.contains(r#""connect": "error""#) && out.contains("Permission denied"),
            "{sock}: {out}"
        );
    }
    // The gate is the group: a postdrop member (frontdoor's uid here) gets
    // in and is trusted, as deploy/postfix/master.cf says. After an XCLIENT
    // like frontdoor's for a loopback client, XCLIENT is neither offered
    // nor accepted any more.
    let sock = xclient_sock.display().to_string();
    let out = intruder(
        s.stack.path(),
        FD_UID,
        &[gid_of("postdrop")],
        &[
            "smtp",
            &sock,
            "NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PORT=40000",
            "LOGIN=bob@example.org",
        ],
    );
    assert!(
        out.contains(r#""xclient": [{"reply": ["220 "#)
            && out.contains(r#""offered": false}, {"reply": ["550 5.7.0 Error: insufficient authorization"], "offered": false}]"#),
        "{out}\n{}",
        s.stack.postfix_log()
    );

    // From 127.0.0.1, no key: its own XCLIENT is refused, and bob's address
    // needs bob's login.
    let (ok, out) = s.client(
        s.port,
        "127.0.0.1",
        "smtp",
        &[
            "--xclient-attempt",
            "bob@example.org",
            "--from",
            "bob@example.org",
            "--to",
            "bob@example.org",
            "--body",
            "forged",
        ],
    );
    assert!(!ok, "{out}\n{}", s.stack.postfix_log());
    assert!(out.contains(r#""xclient": [550"#), "{out}");
    assert!(out.contains("not logged in"), "{out}");
    assert!(
        !out.contains("XCLIENT "),
        "XCLIENT offered to the client: {out}"
    );

    // From 127.0.0.1 with alice's key: still alice, not bob.
    let args = s.with_key(&[
        "--xclient-attempt",
        "bob@example.org",
        "--from",
        "bob@example.org",
        "--to",
        "bob@example.org",
        "--body",
        "forged",
    ]);
    let (ok, out) = s.client(s.port, "127.0.0.1", "smtp", &args);
    assert!(!ok, "{out}");
    assert!(out.contains(r#""xclient": [550"#), "{out}");
    assert!(out.contains("not owned by user alice@example.org"), "{out}");

    // The pinned key from a routable address: submits as alice without AUTH,
    // Postfix sees the real address, the message reaches bob.
    let tok = format!("deploy-token-{}", std::process::id());
    let args = s.with_key(&[
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.org",
        "--body",
        &tok,
    ]);
    let (ok, out) = s.client(s.port, CLIENT_IP, "smtp", &args);
    assert!(ok, "{out}\n{}\n{}", s.fd.logs(), s.stack.logs());
    assert!(
        s.stack.wait_log(
            MailStack::postfix_log,
            "client=unknown[192.0.2.1], sasl_method=XCLIENT, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        s.stack.postfix_log()
    );
    let (ok, out) = s.client(
        s.port,
        CLIENT_IP,
        "imap",
        &["--login", "bob@example.org", "bobpw", "--wait-for", &tok],
    );
    assert!(ok, "{out}\n{}", s.stack.logs());

    // Postfix's PROXY service on its socket: the header's address, AUTH.
    let (ok, out) = s.client(
        s.proxy_port,
        CLIENT_IP,
        "smtp",
        &[
            "--no-alpn",
            "--login",
            "alice@example.org",
            "alicepw",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            "via proxy",
        ],
    );
    assert!(ok, "{out}\n{}\n{}", s.fd.logs(), s.stack.postfix_log());
    assert!(
        s.stack.wait_log(
            MailStack::postfix_log,
            "client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        s.stack.postfix_log()
    );
    // Only frontdoor's XCLIENT logins, never bob's.
    assert!(
        !s.stack
            .postfix_log()
            .contains("sasl_username=bob@example.org"),
        "{}",
        s.stack.postfix_log()
    );
}

const CHATMAIL_TEST: &str = "chatmail_rules_admit_one_uid_per_port";

/// `deploy/nftables/chatmail.nft`: Postfix's smarthost port admits uid
/// frontdoor only, frontdoor's LMTP port uid postfix only; uid 65534 gets
/// neither.
#[test]
fn chatmail_rules_admit_one_uid_per_port() {
    if !in_own_netns(CHATMAIL_TEST) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("fd-chatmail-")
        .tempdir()
        .unwrap();
    chmod(dir.path(), 0o711);
    // Listening is enough: the kernel completes the handshake.
    let _smarthost = std::net::TcpListener::bind("127.0.0.1:10025").unwrap();
    let _lmtp = std::net::TcpListener::bind("127.0.0.1:24").unwrap();
    let postfix = interop::uid_of("postfix");
    let connects = |uid: u32, port: &str| {
        let out = intruder(dir.path(), uid, &[], &["tcp", port]);
        out.contains(r#""connect": "ok""#)
    };
    // Without the rules every uid gets through: the test can tell.
    assert!(connects(INTRUDER_UID, "10025") && connects(INTRUDER_UID, "24"));
    load_firewall(dir.path(), "chatmail.nft");
    assert!(!connects(INTRUDER_UID, "10025"));
    assert!(!connects(INTRUDER_UID, "24"));
    assert!(!connects(postfix, "10025"));
    assert!(!connects(FD_UID, "24"));
    assert!(connects(FD_UID, "10025"));
    assert!(connects(postfix, "24"));
}
