//! Federation with a real Postfix 3.7 and OpenDKIM 2.11 from Debian as a
//! third domain, `c.test`, beside frontdoor's chatmail relay `a.test`.
//!
//! Everything runs on loopback addresses of this test's own: dnsmasq on
//! 127.0.18.53:53 publishes both domains' DKIM keys (OpenDKIM's from
//! `opendkim-genkey`, frontdoor's from its data dir) and MX/A records;
//! Postfix listens on 127.0.18.3:25 with OpenDKIM as its milter (signing
//! for mail from 127.0.18.5, its "internal host", verifying the rest);
//! frontdoor's MX is on 127.0.0.1 in chatmail mode (STARTTLS required,
//! DKIM checked, the encryption rule on).
//!
//! - Postfix → frontdoor: a message submitted to Postfix from 127.0.18.5
//!   is signed by OpenDKIM, relayed over STARTTLS to frontdoor's MX and
//!   stored with `Authentication-Results: a.test; dkim=pass header.d=c.test`.
//!   The same message from a host OpenDKIM does not sign for is refused,
//!   and Postfix's log gives frontdoor's reason with its bounce.
//! - Straight to frontdoor's MX (smtplib, STARTTLS): the same message
//!   unsigned, and signed with c.test's key then altered, are refused with
//!   the reason; neither is stored.
//! - frontdoor → Postfix: alice's message, signed by frontdoor, arrives in
//!   Postfix's mailbox with OpenDKIM's `dkim=pass header.d=a.test`. It goes
//!   through the smarthost path for now ([`outbound_transport`]: one line
//!   to switch to direct MX delivery, which the DNS here already supports).
//!
//! Domains are `.test` ones: hickory-resolver answers `localhost.` names
//! itself (RFC 6761), never asking dnsmasq for their TXT records.
//! Postfix's master must run as root, as CI does.

mod common;
mod mail_common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dns::{self, Record};
use common::{poll_until, str_field, write_cert};
use mail_common::*;

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTFIX_MASTER: &str = "/usr/lib/postfix/sbin/master";
const OPENDKIM: &str = "/usr/sbin/opendkim";
const GENKEY: &str = "/usr/sbin/opendkim-genkey";
const APT: &str = "apt-get install -y postfix opendkim opendkim-tools dnsmasq-base python3-dkim";

/// Postfix's SMTP service (its MX).
const POSTFIX_ADDR: &str = "127.0.18.3:25";
/// The host OpenDKIM signs for (its `InternalHosts`).
const POSTFIX_CLIENT: &str = "127.0.18.5";
/// A host Postfix relays for but OpenDKIM does not sign for.
const POSTFIX_UNSIGNED_CLIENT: &str = "127.0.18.6";
/// dnsmasq, for frontdoor (`mail.dns.resolvers`) and OpenDKIM (`ResolverConfiguration`).
const DNS_ADDR: &str = "127.0.18.53:53";
const DNS_IP: &str = "127.0.18.53";
/// OpenDKIM's milter socket (8891, its usual port, on this test's own
/// address).
const MILTER: &str = "127.0.18.7:8891";
/// OpenDKIM's `AuthservID`.
const OPENDKIM_ID: &str = "c-verifier";
/// Deadline for a hop through Postfix (queue manager, milter, delivery).
const HOP: Duration = Duration::from_secs(30);

/// How frontdoor sends mail for other domains: the `mail:` lines. Today the
/// smarthost path pointed at Postfix; with direct MX delivery this becomes
/// the delivery section, and the MX record of c.test (published below)
/// leads to the same Postfix.
fn outbound_transport() -> String {
    format!("  relay: \"{POSTFIX_ADDR}\"\n")
}

fn require(p: &str) {
    assert!(
        Path::new(p).exists(),
        "{p} is missing: this test needs Debian's Postfix and OpenDKIM: {APT}"
    );
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    assert!(out.status.success(), "no system user {user:?}: {APT}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A daemon stopped on drop: SIGTERM (Postfix's master then stops its
/// children, which would otherwise keep port 25 for a while), SIGKILL after
/// 10 s.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let child = &mut self.0;
        if !poll_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// The DKIM key OpenDKIM signs with: `opendkim-genkey` output, and the TXT
/// record value its `.txt` file holds (the quoted strings joined).
fn genkey(dir: &Path) -> (PathBuf, String) {
    let out = Command::new(GENKEY)
        .args(["-b", "2048", "-d", "c.test", "-s", "pf", "-D"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let txt = std::fs::read_to_string(dir.join("pf.txt")).unwrap();
    let value: String = txt
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat();
    assert!(
        value.starts_with("v=DKIM1;") && value.contains("p=MII"),
        "{txt}"
    );
    (dir.join("pf.private"), value)
}

fn start_opendkim(dir: &Path, key: &Path) -> Daemon {
    let milter: SocketAddr = MILTER.parse().unwrap();
    // Debian builds OpenDKIM with libunbound, which by default asks no
    // server on a loopback address and answers `test.` names itself
    // (RFC 6761): a config for it that asks ours for everything.
    let unbound = dir.join("opendkim-unbound.conf");
    std::fs::write(
        &unbound,
        format!(
            "server:\n  do-not-query-localhost: no\n  \
             local-zone: \"test.\" nodefault\n\
             forward-zone:\n  name: \".\"\n  forward-addr: {}@{}\n",
            DNS_IP, 53
        ),
    )
    .unwrap();
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\n\
             Mode sv\n\
             Domain c.test\n\
             Selector pf\n\
             KeyFile {key}\n\
             RequireSafeKeys no\n\
             Socket inet:{port}@{ip}\n\
             PidFile {dir}/opendkim.pid\n\
             InternalHosts {POSTFIX_CLIENT}\n\
             ResolverConfiguration {unbound}\n\
             AuthservID {OPENDKIM_ID}\n\
             AlwaysAddARHeader yes\n\
             Canonicalization relaxed/relaxed\n\
             On-BadSignature accept\n\
             On-NoSignature accept\n",
            key = key.display(),
            dir = dir.display(),
            unbound = unbound.display(),
            port = milter.port(),
            ip = milter.ip(),
        ),
    )
    .unwrap();
    let child = Command::new(OPENDKIM)
        .args(["-f", "-x"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("opendkim.stderr")).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let up = poll_until(HOP, || {
        TcpStream::connect_timeout(&milter, Duration::from_secs(1)).is_ok()
    });
    assert!(
        up,
        "OpenDKIM did not listen: {}",
        std::fs::read_to_string(dir.join("opendkim.stderr")).unwrap_or_default()
    );
    d
}

/// Postfix for c.test: its MX on [`POSTFIX_ADDR`], OpenDKIM as milter,
/// mail for c.test into the Maildir `dir/mail/inbox/`, mail for a.test to
/// frontdoor's MX with STARTTLS required.
fn start_postfix(dir: &Path, frontdoor_mx: SocketAddr) -> Daemon {
    let pf = dir.join("postfix");
    for sub in ["", "conf", "queue", "data"] {
        std::fs::create_dir_all(pf.join(sub)).unwrap();
        chmod(&pf.join(sub), 0o755);
    }
    std::os::unix::fs::chown(pf.join("data"), Some(uid_of("postfix")), None).unwrap();
    let mail = dir.join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::os::unix::fs::chown(&mail, Some(65534), Some(65534)).unwrap();
    let (cert, key) = write_cert(dir, "postfix", &["mx.c.test"]);
    chmod(&key, 0o644);
    let main_cf = format!(
        "compatibility_level = 3.6\n\
         queue_directory = {d}/postfix/queue\n\
         data_directory = {d}/postfix/data\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         maillog_file = {d}/postfix.log\n\
         maillog_file_prefixes = {d}\n\
         myhostname = mx.c.test\n\
         mydomain = c.test\n\
         myorigin = c.test\n\
         mydestination =\n\
         inet_interfaces = loopback-only\n\
         inet_protocols = ipv4\n\
         mynetworks = {POSTFIX_CLIENT}/32, {POSTFIX_UNSIGNED_CLIENT}/32\n\
         relayhost =\n\
         biff = no\n\
         alias_maps =\n\
         alias_database =\n\
         local_recipient_maps =\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
         virtual_mailbox_domains = c.test\n\
         virtual_mailbox_base = {d}/mail\n\
         virtual_mailbox_maps = static:inbox/\n\
         virtual_uid_maps = static:65534\n\
         virtual_gid_maps = static:65534\n\
         transport_maps = inline:{{ a.test=smtp:[{mx_ip}]:{mx_port} }}\n\
         smtp_dns_support_level = disabled\n\
         smtp_tls_security_level = encrypt\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_cert_file = {cert}\n\
         smtpd_tls_key_file = {key}\n\
         smtpd_milters = inet:{MILTER}\n\
         non_smtpd_milters = $smtpd_milters\n\
         milter_default_action = tempfail\n",
        d = dir.display(),
        mx_ip = frontdoor_mx.ip(),
        mx_port = frontdoor_mx.port(),
        cert = cert.display(),
        key = key.display(),
    );
    std::fs::write(pf.join("conf/main.cf"), main_cf).unwrap();
    let internal = include_str!("interop/postfix-master-internal.cf");
    std::fs::write(
        pf.join("conf/master.cf"),
        format!(
            "{POSTFIX_ADDR} inet n - n - - smtpd\n\
             virtual unix - n n - - virtual\n\
             tlsmgr unix - - n 1000? 1 tlsmgr\n{internal}"
        ),
    )
    .unwrap();
    let out = Command::new(POSTFIX)
        .arg("-c")
        .arg(pf.join("conf"))
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "postfix check: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        postfix_logs(dir)
    );
    let child = Command::new(POSTFIX_MASTER)
        .arg("-c")
        .arg(pf.join("conf"))
        .arg("-s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("postfix.stderr")).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let addr: SocketAddr = POSTFIX_ADDR.parse().unwrap();
    let up = poll_until(HOP, || {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 64];
        use std::io::Read;
        matches!(s.read(&mut b), Ok(n) if b[..n].starts_with(b"220 "))
    });
    assert!(up, "Postfix did not greet on {addr}\n{}", postfix_logs(dir));
    d
}

fn postfix_logs(dir: &Path) -> String {
    let r = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!(
        "--- postfix.log\n{}\n--- postfix.stderr\n{}\n--- opendkim.stderr\n{}",
        r("postfix.log"),
        r("postfix.stderr"),
        r("opendkim.stderr")
    )
}

/// Files of Postfix's Maildir whose text contains `token`.
fn postfix_inbox_with(dir: &Path, token: &str) -> Option<String> {
    let base = dir.join("mail/inbox");
    ["new", "cur"].iter().find_map(|sub| {
        std::fs::read_dir(base.join(sub))
            .ok()?
            .flatten()
            .find_map(|e| {
                let t = std::fs::read_to_string(e.path()).ok()?;
                t.contains(token).then_some(t)
            })
    })
}

/// A message that passes chatmail's encryption rule (RFC 3156
/// `multipart/encrypted`, an OpenPGP message made with GnuPG for the
/// chatmail tests), CRLF line ends.
fn encrypted(from: &str, to: &str, token: &str) -> String {
    let armor = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/chatmail/encrypted-newformat.asc"
    ))
    .unwrap();
    let text = format!(
        "From: <{from}>\nTo: <{to}>\nSubject: [...]\nDate: Wed, 02 Dec 2026 03:00:00 +0000\n\
         Message-ID: <{token}@c.test>\nChat-Version: 1.0\nMIME-Version: 1.0\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n\
         \tboundary=\"XyZ\"\n\n\n--XyZ\nContent-Description: PGP/MIME version identification\n\
         Content-Type: application/pgp-encrypted\n\nVersion: 1\n\n\n--XyZ\n\
         Content-Description: OpenPGP encrypted message\n\
         Content-Disposition: inline; filename=\"encrypted.asc\";\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\n{}\n\n--XyZ--\n\
         X-Token: {token}\n",
        armor.trim_end()
    );
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// Submits argv[3] to Postfix from its internal host (OpenDKIM signs it).
const TO_POSTFIX: &str = r#"
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
msg = open(sys.argv[3], "rb").read()
with smtplib.SMTP(host, int(port), timeout=30, source_address=(sys.argv[2], 0)) as s:
    s.sendmail("carol@c.test", ["alice@a.test"], msg)
print("OK")
"#;

/// Each message file after the port and CA, straight to frontdoor's MX
/// after STARTTLS; one line per message: `OK` or the refusal.
const TO_MX: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
for path in sys.argv[3:]:
    msg = open(path, "rb").read()
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
        s.starttls(context=ctx)
        try:
            s.sendmail("carol@c.test", ["alice@a.test"], msg)
            print("OK")
        except smtplib.SMTPDataError as e:
            print("REFUSED", e.smtp_code, e.smtp_error.decode())
"#;

/// Signs argv[1] with the PEM key argv[2] as c.test / pf (dkimpy), writes
/// the signed message to argv[3] with its body then altered.
const SIGN_AND_ALTER: &str = r#"
import sys, dkim
msg = open(sys.argv[1], "rb").read()
key = open(sys.argv[2], "rb").read()
sig = dkim.sign(msg, b"pf", b"c.test", key, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"message-id"])
open(sys.argv[3], "wb").write(sig + msg.replace(b"X-Token:", b"X-Token: altered"))
"#;

fn python(py: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e}: {APT}"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn postfix_with_opendkim_federates_both_ways() {
    for p in [POSTFIX, POSTFIX_MASTER, OPENDKIM, GENKEY] {
        require(p);
    }
    let dir = tempfile::Builder::new()
        .prefix("fd-fed-")
        .tempdir()
        .unwrap();
    // Postfix's and OpenDKIM's unprivileged users traverse it.
    chmod(dir.path(), 0o711);
    let d = dir.path();
    let (pf_key, pf_txt) = genkey(d);
    // The PKCS#1 form of the same key, which dkimpy reads.
    let pf_pkcs1 = d.join("pf.pkcs1.pem");
    let out = Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&pf_key)
        .arg("-out")
        .arg(&pf_pkcs1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // frontdoor: the chatmail relay a.test.
    let mut fd = Server::new(Opts {
        inbound: true,
        mx_cert: true,
        domains: "[a.test, example.org]",
        extra: format!(
            "  chatmail: {{}}\n  dns: {{ resolvers: [\"{DNS_ADDR}\"] }}\n{}",
            outbound_transport()
        ),
        ..Opts::default()
    });
    fd.accounts(&["add", "alice@a.test"], Some("alice-password"));
    let mx = fd.inbound.unwrap();
    let signer = frontdoor::mail::dkim::Signer::load_or_generate(&fd.data_dir(), "dkim").unwrap();

    let _dns = dns::start(
        DNS_ADDR.parse().unwrap(),
        &[
            Record::txt("pf._domainkey.c.test", &pf_txt),
            Record::txt("dkim._domainkey.a.test", &signer.txt_rsa),
            Record::txt("dkim-ed._domainkey.a.test", &signer.txt_ed25519),
            Record::mx("c.test", "mx.c.test", 10),
            Record::addr("mx.c.test", "127.0.18.3"),
            Record::mx("a.test", "mx.a.test", 10),
            Record::addr("mx.a.test", &mx.ip().to_string()),
        ],
    );
    let _opendkim = start_opendkim(d, &pf_key);
    let _postfix = start_postfix(d, mx);

    // (1) Postfix → frontdoor, signed by OpenDKIM.
    let good = d.join("good.eml");
    std::fs::write(
        &good,
        encrypted("carol@c.test", "alice@a.test", "tok-from-postfix"),
    )
    .unwrap();
    let out = python(
        "python3",
        TO_POSTFIX,
        &[POSTFIX_ADDR, POSTFIX_CLIENT, good.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "OK");
    let delivered = fd
        .process()
        .log
        .wait_event_sync(HOP, |e| str_field(e, "message") == "delivered");
    assert!(
        delivered.is_some(),
        "frontdoor did not store Postfix's message\n{}\n{}",
        fd.logs(),
        postfix_logs(d)
    );
    let pass = fd
        .process()
        .log
        .count(|e| str_field(e, "message") == "DKIM: dkim=pass");
    assert_eq!(pass, 1, "{}", fd.logs());

    // (1b) Through Postfix from a host OpenDKIM does not sign for: frontdoor
    // refuses it, and Postfix logs frontdoor's reason with the bounce.
    let via = d.join("via-unsigned.eml");
    std::fs::write(
        &via,
        encrypted("carol@c.test", "alice@a.test", "tok-via-unsigned"),
    )
    .unwrap();
    let out = python(
        "python3",
        TO_POSTFIX,
        &[POSTFIX_ADDR, POSTFIX_UNSIGNED_CLIENT, via.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "OK");
    let said = "said: 554 5.7.1 No DKIM signature found (in reply to end of DATA command)";
    let bounced = poll_until(HOP, || {
        let log = std::fs::read_to_string(d.join("postfix.log")).unwrap_or_default();
        log.lines().any(|l| {
            l.contains("to=<alice@a.test>") && l.contains("status=bounced") && l.contains(said)
        })
    });
    assert!(bounced, "{}\n{}", postfix_logs(d), fd.logs());

    // (2) Straight to frontdoor's MX: unsigned, and signed then altered.
    let unsigned = d.join("unsigned.eml");
    std::fs::write(
        &unsigned,
        encrypted("carol@c.test", "alice@a.test", "tok-unsigned"),
    )
    .unwrap();
    let altered_src = d.join("altered-src.eml");
    std::fs::write(
        &altered_src,
        encrypted("carol@c.test", "alice@a.test", "tok-altered"),
    )
    .unwrap();
    let altered = d.join("altered.eml");
    python(
        "/usr/bin/python3",
        SIGN_AND_ALTER,
        &[
            altered_src.to_str().unwrap(),
            pf_pkcs1.to_str().unwrap(),
            altered.to_str().unwrap(),
        ],
    );
    let ca = fd.dir.path().join("mx.crt");
    let out = python(
        "python3",
        TO_MX,
        &[
            &mx.port().to_string(),
            ca.to_str().unwrap(),
            unsigned.to_str().unwrap(),
            altered.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "REFUSED 554 5.7.1 No DKIM signature found",
            "REFUSED 554 5.7.1 DKIM signature is invalid: Calculated body hash does not match signature hash",
        ],
        "{}",
        fd.logs()
    );

    // (3) frontdoor → Postfix: alice's message, signed by frontdoor.
    let h = proxy_header(Some(identity("alice@a.test")), Some(SECRET));
    let mut c = Client::open(fd.submission, Some(&h));
    c.cmd("EHLO x");
    assert_eq!(c.cmd("MAIL FROM:<alice@a.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<carol@c.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(&encrypted("alice@a.test", "carol@c.test", "tok-to-postfix"));
    let (code, text) = c.cmd(".");
    assert_eq!(code, 250, "{text}\n{}\n{}", fd.logs(), postfix_logs(d));
    let mut arrived = None;
    poll_until(HOP, || {
        arrived = postfix_inbox_with(d, "tok-to-postfix");
        arrived.is_some()
    });
    let arrived =
        arrived.unwrap_or_else(|| panic!("not in Postfix's mailbox\n{}", postfix_logs(d)));
    // OpenDKIM's verdict, one result per signature (ed25519 and RSA).
    let verdict: Vec<&str> = arrived
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split("\nAuthentication-Results: ")
        .skip(1)
        .filter(|f| f.starts_with(OPENDKIM_ID))
        .collect();
    assert!(!verdict.is_empty(), "no OpenDKIM verdict:\n{arrived}");
    let all = verdict.concat();
    assert!(
        all.contains("dkim=pass") && all.contains("header.d=a.test"),
        "{arrived}"
    );
    assert!(!all.contains("dkim=fail"), "{arrived}");

    // The stored copy on frontdoor: frontdoor's own Authentication-Results
    // first, the refused messages absent.
    let logs = fd.logs();
    let st = fd.stop_and_open_store();
    let stored: Vec<String> = st
        .messages("alice@a.test", "INBOX")
        .unwrap()
        .iter()
        .map(|m| {
            String::from_utf8_lossy(&st.read("alice@a.test", "INBOX", m.uid).unwrap()).into_owned()
        })
        .collect();
    assert_eq!(stored.len(), 1, "{logs}");
    let first = stored[0].lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Authentication-Results: a.test;"),
        "{}",
        stored[0]
    );
    assert!(
        stored[0].contains("dkim=pass") && stored[0].contains("header.d=c.test"),
        "{}",
        stored[0]
    );
    assert!(stored[0].contains("tok-from-postfix"));
}
