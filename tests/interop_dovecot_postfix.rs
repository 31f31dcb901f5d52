//! frontdoor in front of real Dovecot 2.3 and Postfix 3.7 from Debian.
//!
//! Each test starts private daemon instances (`interop::MailStack`) and the
//! real `frontdoor` binary, then drives Python's imaplib/smtplib through the
//! front door with ALPN. Clients connect from 127.0.0.2 while the front door
//! reaches the backends from 127.0.0.1, so an address in a daemon's log
//! proves where it came from. Without dovecot/postfix installed, or not as
//! root, these tests fail: CI installs the daemons and must run them.

mod common;
mod interop;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{write_cert, Frontdoor};
use frontdoor::frontdoor::xclient::{self, XclientError};
use frontdoor::proxy_protocol::{self, ConnInfo, IdentityTlvs, SslInfo};
use interop::{python, MailStack};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long Postfix and Dovecot get to log or deliver: generous, a loaded CI
/// machine can take seconds per hop.
const LOG_WAIT: Duration = Duration::from_secs(30);

const CLIENT_IP: &str = "127.0.0.2";
const T: Duration = Duration::from_secs(10);

struct Setup {
    stack: MailStack,
    fd: Frontdoor,
    ca: PathBuf,
    port: u16,
}

/// Front door config: `imap` → Dovecot (PROXY v2); `smtp` → Postfix, either
/// the PROXY v2 submission service or the XCLIENT one. `extra` goes at the
/// top level (e.g. a `client_auth` section).
fn frontdoor_config(dir: &Path, stack: &MailStack, xclient: bool, extra: &str) -> PathBuf {
    let (c, k) = write_cert(dir, "server", &["mail.example.org"]);
    let smtp = if xclient {
        format!(
            "backend: \"{}\"\n    proxy_protocol: none\n    identity: xclient",
            stack.submission_xclient
        )
    } else {
        format!(
            "backend: \"{}\"\n    proxy_protocol: v2",
            stack.submission_proxied
        )
    };
    let cfg = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
tls:
  certificates:
    - cert: {c}
      key: {k}
routes:
  imap:
    alpn: [imap]
    backend: "{imap}"
    proxy_protocol: v2
  smtp:
    alpn: [smtp]
    {smtp}
{extra}
"#,
        c = c.display(),
        k = k.display(),
        imap = stack.imap_proxied,
    );
    let p = dir.join("frontdoor.yaml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn setup(xclient: bool, extra: impl FnOnce(&Path) -> String) -> Setup {
    let stack = MailStack::start();
    let dir = stack.path().join("frontdoor");
    std::fs::create_dir(&dir).unwrap();
    let extra = extra(&dir);
    let cfg = frontdoor_config(&dir, &stack, xclient, &extra);
    let fd = Frontdoor::start(&cfg, 1);
    let port = fd.addrs[0].port();
    Setup {
        stack,
        fd,
        ca: dir.join("server.crt"),
        port,
    }
}

impl Setup {
    fn client(&self, mode: &str, args: &[&str]) -> (bool, serde_like::Obj) {
        let port = self.port.to_string();
        let ca = self.ca.display().to_string();
        let mut all = vec![mode, "--port", &port, "--src", CLIENT_IP, "--ca", &ca];
        all.extend_from_slice(args);
        let (ok, out, err) = python(&all);
        assert!(
            !out.trim().is_empty(),
            "client printed nothing; stderr:\n{err}\nfrontdoor:\n{}\n{}",
            self.fd.logs(),
            self.stack.logs()
        );
        (ok, serde_like::Obj(out))
    }
}

/// The client prints one JSON object; the tests only need substring checks
/// on it, which keeps serde_json out of the dev-dependencies.
mod serde_like {
    #[derive(Debug)]
    pub struct Obj(pub String);
    impl Obj {
        pub fn has(&self, s: &str) -> bool {
            self.0.contains(s)
        }
    }
}

fn token() -> String {
    format!(
        "token-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn imap_password_login_through_frontdoor_shows_real_client_address() {
    let s = setup(false, |_| String::new());
    let (ok, out) = s.client("imap", &["--login", "alice@example.org", "alicepw"]);
    assert!(ok, "{out:?}");
    assert!(out.has(r#""alpn": "imap""#), "{out:?}");
    assert!(out.has("Dovecot"), "greeting is Dovecot's: {out:?}");
    assert!(out.has(r#""login": "OK""#), "{out:?}");
    // Dovecot logs the PROXY header's source, 127.0.0.2, as rip, and takes
    // the connection as secured (PP2_CLIENT_SSL), which is what lets a
    // password login through with disable_plaintext_auth = yes.
    let want = "Login: user=<alice@example.org>, method=PLAIN, rip=127.0.0.2, lip=127.0.0.1";
    assert!(
        s.stack.wait_log(MailStack::dovecot_log, want, LOG_WAIT),
        "{}",
        s.stack.dovecot_log()
    );
    let line = s
        .stack
        .dovecot_log()
        .lines()
        .find(|l| l.contains(want))
        .unwrap()
        .to_string();
    assert!(line.contains("secured"), "{line}");
    assert!(
        !s.stack.dovecot_log().contains("rip=127.0.0.1,"),
        "{}",
        s.stack.dovecot_log()
    );

    // A wrong password is refused by Dovecot, through the front door.
    let (ok, out) = s.client("imap", &["--login", "alice@example.org", "wrong"]);
    assert!(!ok && out.has(r#""login": "NO""#), "{out:?}");
}

#[test]
fn smtp_submission_with_auth_is_delivered_and_fetched_over_the_frontdoor() {
    let s = setup(false, |_| String::new());
    let tok = token();
    let (ok, out) = s.client(
        "smtp",
        &[
            "--login",
            "alice@example.org",
            "alicepw",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            &tok,
        ],
    );
    assert!(ok, "{out:?}\n{}", s.stack.postfix_log());
    assert!(out.has(r#""alpn": "smtp""#), "{out:?}");
    // Postfix saw the real client (PROXY header) and the SASL login.
    assert!(
        s.stack.wait_log(
            MailStack::postfix_log,
            // The name is whatever 127.0.0.2 resolves to here; the address counts.
            "[127.0.0.2], sasl_method=PLAIN, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        s.stack.postfix_log()
    );
    // Postfix → Dovecot LMTP → bob's INBOX, then fetched through the front door.
    let (ok, out) = s.client(
        "imap",
        &["--login", "bob@example.org", "bobpw", "--wait-for", &tok],
    );
    assert!(ok, "{out:?}\n{}", s.stack.logs());
    assert!(
        out.has(&tok) && out.has("From: alice@example.org"),
        "{out:?}"
    );
    assert!(
        s.stack.postfix_log().contains("status=sent") && s.stack.postfix_log().contains("Saved"),
        "{}",
        s.stack.postfix_log()
    );

    // A sender alice does not own is refused by Postfix's login check.
    let (ok, out) = s.client(
        "smtp",
        &[
            "--login",
            "alice@example.org",
            "alicepw",
            "--from",
            "bob@example.org",
            "--to",
            "bob@example.org",
            "--body",
            "forged",
        ],
    );
    assert!(
        !ok && out.has("not owned by user alice@example.org"),
        "{out:?}"
    );
}

/// The wire contract of DESIGN §4 against real Dovecot, with the header
/// built by frontdoor's own encoder: `PP2_TYPE_SSL` with
/// `PP2_CLIENT_CERT_CONN`, `verify` = 0 and `PP2_SUBTYPE_SSL_CN` = the
/// registry login makes `AUTHENTICATE EXTERNAL` log in as that login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_takes_the_ssl_cn_tlv_as_the_external_user() {
    let stack = MailStack::start();

    // Pinned key: EXTERNAL logs in as the CN.
    let mut c = imap_with_header(&stack, Some("alice@example.org"), 50001).await;
    assert_eq!(
        c.cmd("a AUTHENTICATE EXTERNAL =").await,
        "a OK",
        "{}",
        stack.logs()
    );
    assert_eq!(c.cmd("b SELECT INBOX").await, "b OK");
    assert!(
        stack.wait_log(
            MailStack::dovecot_log,
            "Login: user=<alice@example.org>, method=EXTERNAL, rip=192.0.2.51",
            LOG_WAIT
        ),
        "{}",
        stack.dovecot_log()
    );

    // The pinned login cannot ask for another user as authzid.
    let mut c = imap_with_header(&stack, Some("alice@example.org"), 50002).await;
    assert_eq!(
        c.cmd("a AUTHENTICATE EXTERNAL Ym9iQGV4YW1wbGUub3Jn").await,
        "a NO"
    );

    // With the CN set, a password login for another account is refused: the
    // CN overrides the user name, and bob's password is not alice's.
    let mut c = imap_with_header(&stack, Some("alice@example.org"), 50003).await;
    assert_eq!(c.cmd("a LOGIN bob@example.org bobpw").await, "a NO");

    // No pinned key (no CN): EXTERNAL has no user and fails; passwords work.
    let mut c = imap_with_header(&stack, None, 50004).await;
    assert_eq!(c.cmd("a AUTHENTICATE EXTERNAL =").await, "a NO");
    let mut c = imap_with_header(&stack, None, 50005).await;
    assert_eq!(c.cmd("a LOGIN bob@example.org bobpw").await, "a OK");
}

struct Imap {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Imap {
    /// Send a tagged command; return the tag and status word of its reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let tag = line.split(' ').next().unwrap();
        for _ in 0..100 {
            let mut l = String::new();
            let n = tokio::time::timeout(T, self.r.read_line(&mut l))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed after {line}");
            if l.starts_with(&format!("{tag} ")) {
                return l.split(' ').take(2).collect::<Vec<_>>().join(" ");
            }
        }
        panic!("no tagged reply to {line}");
    }
}

/// A connection to Dovecot's PROXY port as client 192.0.2.(50 + port -
/// 50000): one address per case, because Dovecot's auth penalty slows every
/// later attempt from an address that failed once.
async fn imap_with_header(stack: &MailStack, cn: Option<&str>, port: u16) -> Imap {
    let info = ConnInfo {
        src: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, (port - 50000) as u8 + 50)),
            port,
        ),
        dst: "127.0.0.1:443".parse().unwrap(),
        alpn: Some(b"imap".to_vec()),
        authority: Some("mail.example.org".into()),
        unique_id: Some(b"test-conn".to_vec()),
        ssl: Some(SslInfo {
            client_cert: cn.is_some(),
            verified: cn.is_some(),
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            sig_alg: None,
            key_alg: None,
            cn: cn.map(str::to_owned),
            resumed: false,
        }),
        // The whole header as frontdoor sends it for a pinned key: Dovecot
        // must skip the 0xE0.. identity TLVs and the HMAC.
        identity: cn.map(|login| IdentityTlvs {
            account: "alice".into(),
            login: login.into(),
            key_name: "alice-laptop".into(),
            fingerprint: [7; 32],
            no_imap_preauth: true,
        }),
    };
    let header = proxy_protocol::encode_v2(&info, cn.map(|_| &b"shared secret"[..]));
    let mut s = TcpStream::connect(stack.imap_proxied).await.unwrap();
    s.write_all(&header).await.unwrap();
    let (r, w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut greeting = String::new();
    tokio::time::timeout(T, r.read_line(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}\n{}", stack.logs());
    Imap { r, w }
}

/// One SMTP exchange: send `line` (if any), return the last reply line.
async fn smtp_cmd(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    line: &str,
) -> String {
    w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(T, r.read_line(&mut l))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after {line}");
        if l.as_bytes().get(3) != Some(&b'-') {
            return l.trim_end().to_string();
        }
    }
}

/// `xclient_prelude` against real Postfix: the fresh greeting comes back,
/// the session is logged in as the login and comes from the client address,
/// sender-login checks apply, and the client cannot XCLIENT again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_prelude_against_real_postfix() {
    let stack = MailStack::start();
    let client: SocketAddr = "192.0.2.10:7777".parse().unwrap();
    let mut s = TcpStream::connect(stack.submission_xclient).await.unwrap();
    let greeting =
        xclient::xclient_prelude(&mut s, "alice@example.org", client, "frontdoor.test", T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", stack.logs()));
    assert_eq!(greeting, b"220 mail.example.org ESMTP Postfix\r\n");

    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let ehlo = smtp_cmd(&mut r, &mut w, "EHLO client.example.net").await;
    assert!(ehlo.starts_with("250 "), "{ehlo}");
    // Postfix re-checks XCLIENT authorization against 192.0.2.10 now.
    let again = smtp_cmd(&mut r, &mut w, "XCLIENT LOGIN=bob@example.org").await;
    assert!(again.starts_with("550 5.7.0"), "{again}");
    // Already authenticated as alice: bob's address is refused...
    assert!(smtp_cmd(&mut r, &mut w, "MAIL FROM:<bob@example.org>")
        .await
        .starts_with("250"));
    let rcpt = smtp_cmd(&mut r, &mut w, "RCPT TO:<bob@example.org>").await;
    assert!(
        rcpt.contains("not owned by user alice@example.org"),
        "{rcpt}"
    );
    assert!(smtp_cmd(&mut r, &mut w, "RSET").await.starts_with("250"));
    // ...alice's own is accepted and delivered.
    let tok = token();
    assert!(smtp_cmd(&mut r, &mut w, "MAIL FROM:<alice@example.org>")
        .await
        .starts_with("250"));
    assert!(smtp_cmd(&mut r, &mut w, "RCPT TO:<bob@example.org>")
        .await
        .starts_with("250"));
    assert!(smtp_cmd(&mut r, &mut w, "DATA").await.starts_with("354"));
    let body = format!("From: alice@example.org\r\nSubject: x\r\n\r\n{tok}\r\n.");
    assert!(smtp_cmd(&mut r, &mut w, &body).await.starts_with("250"));
    let _ = smtp_cmd(&mut r, &mut w, "QUIT").await;
    assert!(
        stack.wait_log(
            MailStack::postfix_log,
            "client=unknown[192.0.2.10], sasl_method=XCLIENT, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        stack.postfix_log()
    );
    let delivered = common::poll_until_async(LOG_WAIT, || {
        stack.inbox_files("bob@example.org").iter().any(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains(&tok)
        })
    })
    .await;
    assert!(delivered, "{}", stack.logs());

    // Without a login only the address moves: the session must still AUTH.
    let mut s = TcpStream::connect(stack.submission_xclient).await.unwrap();
    let anon = xclient::xclient_prelude_for(&mut s, None, client, "fd", T)
        .await
        .unwrap();
    assert!(anon.starts_with(b"220 "));
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let _ = smtp_cmd(&mut r, &mut w, "EHLO c").await;
    let _ = smtp_cmd(&mut r, &mut w, "MAIL FROM:<alice@example.org>").await;
    let rcpt = smtp_cmd(&mut r, &mut w, "RCPT TO:<bob@example.org>").await;
    assert!(
        rcpt.contains("553 5.7.1") && rcpt.contains("not logged in"),
        "{rcpt}"
    );
    let _ = smtp_cmd(&mut r, &mut w, "QUIT").await;

    // An IPv6 client address travels as ADDR=IPV6:….
    let v6: SocketAddr = "[2001:db8::5]:4321".parse().unwrap();
    let mut s = TcpStream::connect(stack.submission_xclient).await.unwrap();
    xclient::xclient_prelude(&mut s, "alice@example.org", v6, "fd", T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.postfix_log()));
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let _ = smtp_cmd(&mut r, &mut w, "EHLO c").await;
    let _ = smtp_cmd(&mut r, &mut w, "QUIT").await;
    assert!(
        stack.wait_log(
            MailStack::postfix_log,
            "disconnect from unknown[2001:db8::5]",
            LOG_WAIT
        ),
        "{}",
        stack.postfix_log()
    );
}

/// A Postfix service without `smtpd_authorized_xclient_hosts` for us: the
/// prelude fails and says it is a configuration matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xclient_prelude_refused_when_postfix_does_not_authorize_us() {
    let stack = MailStack::start();
    // The PROXY service: send a header from an outside address first.
    let mut s = TcpStream::connect(stack.submission_proxied).await.unwrap();
    let header = proxy_protocol::encode_v2(
        &ConnInfo {
            src: "192.0.2.77:1234".parse().unwrap(),
            dst: "127.0.0.1:443".parse().unwrap(),
            alpn: None,
            authority: None,
            unique_id: None,
            ssl: None,
            identity: None,
        },
        None,
    );
    s.write_all(&header).await.unwrap();
    let client: SocketAddr = "192.0.2.77:1234".parse().unwrap();
    let err = xclient::xclient_prelude(&mut s, "alice@example.org", client, "fd", T)
        .await
        .unwrap_err();
    assert!(matches!(err, XclientError::NotOffered), "{err}");
    assert_eq!(err.fault(), xclient::Fault::Configuration);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
}

/// `identity: xclient` through the front door for a client without a pinned
/// key: the client's greeting is Postfix's fresh one, it logs in with AUTH,
/// and the client's own XCLIENT is refused. The client comes from loopback
/// (127.0.0.2), so the front door hands it on as `ADDR=[UNAVAILABLE]`:
/// Postfix would authorize a loopback ADDR again.
#[test]
fn xclient_route_anonymous_client_authenticates_and_cannot_xclient() {
    let s = setup(true, |_| String::new());
    let tok = token();
    let (ok, out) = s.client(
        "smtp",
        &[
            "--xclient-attempt",
            "bob@example.org",
            "--login",
            "alice@example.org",
            "alicepw",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            &tok,
        ],
    );
    assert!(ok, "{out:?}\n{}\n{}", s.fd.logs(), s.stack.logs());
    assert!(out.has(r#""xclient": [550"#), "{out:?}");
    assert!(
        !out.has("XCLIENT"),
        "XCLIENT must not be offered to the client: {out:?}"
    );
    assert!(
        s.stack.wait_log(
            MailStack::postfix_log,
            "client=unknown[unknown], sasl_method=PLAIN, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        s.stack.postfix_log()
    );
}

// ------------------------------------------------------------ pinned keys
//
// The front door with `client_auth: { registry: PATH, unknown_key: reject }`
// (DESIGN §3): the registry login, never the certificate's own CN, reaches
// Dovecot (as PP2_SUBTYPE_SSL_CN) and Postfix (as XCLIENT LOGIN).

struct ClientKey {
    cert: PathBuf,
    key: PathBuf,
    fingerprint: String,
}

/// A client certificate whose own CN is a lie ("mallory"): the front door
/// must forward the registry login, never this.
fn client_key(dir: &Path) -> ClientKey {
    use base64::Engine;
    use sha2::Digest;
    let kp = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mallory@example.org");
    let cert = params.self_signed(&kp).unwrap();
    let spki = kp.public_key_der();
    let fingerprint = format!(
        "sha256:{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&spki))
    );
    let c = dir.join("client.crt");
    let k = dir.join("client.key");
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, kp.serialize_pem()).unwrap();
    ClientKey {
        cert: c,
        key: k,
        fingerprint,
    }
}

fn registry_section(dir: &Path, key: &ClientKey) -> String {
    let reg = dir.join("keys.yaml");
    std::fs::write(
        &reg,
        format!(
            "keys:\n  - name: alice-laptop\n    fingerprint: \"{}\"\n    account: alice\n    login: alice@example.org\n    imap_preauth: false\n",
            key.fingerprint
        ),
    )
    .unwrap();
    format!(
        "client_auth:\n  registry: {}\n  unknown_key: reject\n",
        reg.display()
    )
}

#[test]
fn pinned_key_logs_in_to_dovecot_with_external() {
    let mut key = None;
    let s = setup(false, |dir| {
        let k = client_key(dir);
        let sec = registry_section(dir, &k);
        key = Some(k);
        sec
    });
    let key = key.unwrap();
    let (cert, k) = (
        key.cert.display().to_string(),
        key.key.display().to_string(),
    );
    let (ok, out) = s.client("imap", &["--cert", &cert, "--key", &k, "--external"]);
    assert!(ok, "{out:?}\n{}\n{}", s.fd.logs(), s.stack.logs());
    assert!(
        s.stack.wait_log(
            MailStack::dovecot_log,
            "Login: user=<alice@example.org>, method=EXTERNAL, rip=127.0.0.2",
            LOG_WAIT
        ),
        "{}",
        s.stack.dovecot_log()
    );
    assert!(
        !s.stack.dovecot_log().contains("mallory"),
        "{}",
        s.stack.dovecot_log()
    );
    // Without the key, EXTERNAL has no user.
    let (ok, out) = s.client("imap", &["--external"]);
    assert!(!ok && out.has(r#""login": "NO""#), "{out:?}");
}

#[test]
fn pinned_key_submits_through_postfix_with_xclient_without_auth() {
    let mut key = None;
    let s = setup(true, |dir| {
        let k = client_key(dir);
        let sec = registry_section(dir, &k);
        key = Some(k);
        sec
    });
    let key = key.unwrap();
    let (cert, k) = (
        key.cert.display().to_string(),
        key.key.display().to_string(),
    );
    let tok = token();
    let (ok, out) = s.client(
        "smtp",
        &[
            "--cert",
            &cert,
            "--key",
            &k,
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            &tok,
        ],
    );
    assert!(ok, "{out:?}\n{}\n{}", s.fd.logs(), s.stack.logs());
    assert!(
        s.stack.wait_log(
            MailStack::postfix_log,
            "client=unknown[unknown], sasl_method=XCLIENT, sasl_username=alice@example.org",
            LOG_WAIT
        ),
        "{}",
        s.stack.postfix_log()
    );
    let (ok, out) = s.client(
        "imap",
        &["--login", "bob@example.org", "bobpw", "--wait-for", &tok],
    );
    assert!(ok, "{out:?}");
    assert!(
        !s.stack.postfix_log().contains("mallory"),
        "{}",
        s.stack.postfix_log()
    );
    // A sender alice's login does not own is refused.
    let (ok, out) = s.client(
        "smtp",
        &[
            "--cert",
            &cert,
            "--key",
            &k,
            "--from",
            "bob@example.org",
            "--to",
            "bob@example.org",
            "--body",
            "forged",
        ],
    );
    assert!(
        !ok && out.has("not owned by user alice@example.org"),
        "{out:?}"
    );
}
