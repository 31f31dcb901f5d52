//! Private Dovecot 2.3 and Postfix 3.7 instances for interop tests.
//!
//! [`MailStack::start`] writes every config into a fresh temporary directory,
//! starts `dovecot -F -c FILE` and Postfix's `master -c DIR -s` as child
//! processes on loopback ports picked at run time, and waits until both
//! answer. Nothing is written outside the temporary directory (Dovecot's
//! `base_dir`/`state_dir`, Postfix's `queue_directory`/`data_directory` and
//! both logs live in it); dropping the stack stops both daemons (SIGTERM,
//! then SIGKILL) and removes the directory.
//!
//! The daemons are required: when a binary is missing, or the tests do not
//! run as root (Postfix's master must), `start` panics with the apt-get line
//! to run, so CI can never pass these tests without the real servers.
//!
//! [`MailStack::start_deploy`] builds the instances around the shipped
//! `deploy/dovecot/*.conf` and `deploy/postfix/{main,master}.cf` instead
//! (`!include`d and appended verbatim; only the sender-login map's path is
//! moved into the temporary directory). Their fixed port (1143) and
//! `public/` sockets make it a stack for a network namespace of its own.
//!
//! Accounts: `alice@example.org` / `alicepw`, `bob@example.org` / `bobpw`.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::poll_until;

pub const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-imapd dovecot-lmtpd postfix python3 (preseed: echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections)";
pub const DOVECOT: &str = "/usr/sbin/dovecot";
pub const POSTFIX: &str = "/usr/sbin/postfix";
pub const POSTFIX_MASTER: &str = "/usr/lib/postfix/sbin/master";
pub const USERS: [(&str, &str); 2] = [
    ("alice@example.org", "alicepw"),
    ("bob@example.org", "bobpw"),
];
/// The uid/gid mail is stored as (`nobody`/`nogroup`): Dovecot refuses uid 0.
const MAIL_UID: u32 = 65534;
const STARTUP: Duration = Duration::from_secs(20);
/// The repository's `deploy/` directory.
pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// Ports and files of one running stack.
pub struct MailStack {
    pub dir: tempfile::TempDir,
    /// Dovecot IMAP with `haproxy = yes`: every connection starts with a PROXY header.
    pub imap_proxied: SocketAddr,
    /// Dovecot LMTP (Postfix delivers here).
    pub lmtp: SocketAddr,
    /// Postfix submission with `smtpd_upstream_proxy_protocol = haproxy`.
    pub submission_proxied: SocketAddr,
    /// Postfix submission without PROXY, XCLIENT allowed from 127.0.0.1 only.
    pub submission_xclient: SocketAddr,
    pub dovecot_log: PathBuf,
    pub postfix_log: PathBuf,
    /// Built from the shipped `deploy/` snippets ([`MailStack::start_deploy`]).
    pub deploy: bool,
    dovecot: Option<Child>,
    postfix: Option<Child>,
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the interop tests need Debian's Dovecot and Postfix. Install them: {APT}"
    );
}

fn free_port() -> SocketAddr {
    // Bind port 0, note the port, release it for the daemon; the window in
    // which another process could take it is tiny on a test machine.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    assert!(out.status.success(), "no system user {user:?}: {APT}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

pub fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    assert!(out.status.success(), "no system group {group:?}: {APT}");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
    chmod(p, 0o644);
}

impl MailStack {
    pub fn start() -> Self {
        let mut stack = Self::prepare(false);
        stack.start_dovecot();
        stack.start_postfix();
        stack
    }

    /// A stack around the shipped `deploy/` snippets: Dovecot's PROXY
    /// listener on 127.0.0.1:1143 as shipped, Postfix's frontdoor services
    /// on the sockets of [`MailStack::postfix_socket`]. The fixed port needs
    /// a network namespace of its own.
    pub fn start_deploy() -> Self {
        let mut stack = Self::prepare(true);
        stack.imap_proxied = "127.0.0.1:1143".parse().unwrap();
        stack.start_dovecot();
        stack.start_postfix();
        stack
    }

    /// The socket of a `unix` service of master.cf with private = n.
    pub fn postfix_socket(&self, service: &str) -> PathBuf {
        self.path().join("postfix/queue/public").join(service)
    }

    fn prepare(deploy: bool) -> Self {
        for p in [DOVECOT, POSTFIX, POSTFIX_MASTER, "/usr/lib/dovecot/lmtp"] {
            require(p);
        }
        assert!(
            is_root(),
            "the interop tests start private Postfix and Dovecot instances and must run as root (as CI does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("fd-interop-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        // The daemons' unprivileged users must traverse (not list) it.
        chmod(&d, 0o711);
        let stack = MailStack {
            imap_proxied: free_port(),
            lmtp: free_port(),
            submission_proxied: free_port(),
            submission_xclient: free_port(),
            dovecot_log: d.join("dovecot.log"),
            postfix_log: d.join("postfix.log"),
            deploy,
            dir,
            dovecot: None,
            postfix: None,
        };
        let pf = d.join("postfix");
        for sub in ["", "conf", "queue", "data"] {
            std::fs::create_dir_all(pf.join(sub)).unwrap();
            chmod(&pf.join(sub), 0o755);
        }
        // Dovecot puts Postfix's SASL socket in the queue's private/, as on
        // Debian; Postfix wants that directory as its own, mode 0700.
        let private = pf.join("queue/private");
        std::fs::create_dir(&private).unwrap();
        std::os::unix::fs::chown(&private, Some(uid_of("postfix")), None).unwrap();
        chmod(&private, 0o700);
        stack
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start_dovecot(&mut self) {
        let d = self.path().to_path_buf();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::os::unix::fs::chown(d.join("mail"), Some(MAIL_UID), Some(MAIL_UID)).unwrap();
        let passwd: String = USERS
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        write(&d.join("passwd"), &passwd);
        let conf = if self.deploy {
            format!(
                include_str!("dovecot-deploy.conf.in"),
                dir = d.display(),
                deploy = DEPLOY,
                queue = d.join("postfix/queue").display(),
                uid = MAIL_UID,
                lmtp_port = self.lmtp.port(),
            )
        } else {
            format!(
                include_str!("dovecot.conf.in"),
                dir = d.display(),
                uid = MAIL_UID,
                imap_port = self.imap_proxied.port(),
                lmtp_port = self.lmtp.port(),
            )
        };
        let conf_path = d.join("dovecot.conf");
        write(&conf_path, &conf);
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dovecot.stderr")).unwrap())
            .spawn()
            .unwrap();
        self.dovecot = Some(child);
        // Ready when LMTP greets and the auth socket Postfix uses exists.
        self.wait_greeting(self.lmtp, "220 ", "Dovecot LMTP");
        let auth = if self.deploy {
            d.join("postfix/queue/private/auth")
        } else {
            d.join("run/auth-postfix")
        };
        self.wait_path(&auth, "Dovecot auth socket");
    }

    fn start_postfix(&mut self) {
        let d = self.path().to_path_buf();
        let pf = d.join("postfix");
        let postfix_uid = uid_of("postfix");
        std::os::unix::fs::chown(pf.join("data"), Some(postfix_uid), None).unwrap();
        let internal = include_str!("postfix-master-internal.cf");
        if self.deploy {
            let conf = pf.join("conf");
            let shipped = std::fs::read_to_string(format!("{DEPLOY}/postfix/main.cf")).unwrap();
            let moved = shipped.replace(
                "/etc/postfix/sender_login",
                &format!("{}/sender_login", conf.display()),
            );
            assert_ne!(
                moved, shipped,
                "deploy/postfix/main.cf no longer names /etc/postfix/sender_login"
            );
            let main_cf = format!(
                include_str!("postfix-main-deploy.cf.in"),
                dir = d.display(),
                lmtp = self.lmtp,
            ) + &moved;
            write(&conf.join("main.cf"), &main_cf);
            let services = std::fs::read_to_string(format!("{DEPLOY}/postfix/master.cf")).unwrap();
            write(&conf.join("master.cf"), &format!("{services}\n{internal}"));
            // Every address is owned by the login of the same name.
            let map: String = USERS.iter().map(|(u, _)| format!("{u} {u}\n")).collect();
            write(&conf.join("sender_login"), &map);
            let out = Command::new("/usr/sbin/postmap")
                .arg("-c")
                .arg(&conf)
                .arg(format!("hash:{}/sender_login", conf.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "postmap: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let main_cf = format!(
                include_str!("postfix-main.cf.in"),
                dir = d.display(),
                lmtp = self.lmtp,
            );
            write(&pf.join("conf/main.cf"), &main_cf);
            let master_cf = format!(
                include_str!("postfix-master.cf.in"),
                proxied = self.submission_proxied,
                xclient = self.submission_xclient,
            );
            write(
                &pf.join("conf/master.cf"),
                &format!("{master_cf}{internal}"),
            );
            // Every address is owned by the login of the same name.
            write(&pf.join("conf/sender_login"), "/^(.+)$/ $1\n");
        }
        // Creates the queue directories with the owners Postfix wants.
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(pf.join("conf"))
            .arg("check")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix check failed: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.postfix_log).unwrap_or_default()
        );
        let child = Command::new(POSTFIX_MASTER)
            .arg("-c")
            .arg(pf.join("conf"))
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("postfix.stderr")).unwrap())
            .spawn()
            .unwrap();
        self.postfix = Some(child);
        if self.deploy {
            let sock = self.postfix_socket("frontdoor-xclient");
            self.wait_unix_greeting(&sock, "220 ", "Postfix frontdoor-xclient");
        } else {
            self.wait_greeting(self.submission_xclient, "220 ", "Postfix submission");
        }
    }

    /// Poll the UNIX-domain socket `p` until it greets with `prefix`.
    fn wait_unix_greeting(&self, p: &Path, prefix: &str, what: &str) {
        let up = poll_until(STARTUP, || {
            std::os::unix::net::UnixStream::connect(p)
                .ok()
                .is_some_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    greets(&mut s, prefix)
                })
        });
        assert!(
            up,
            "{what} did not start on {}\n{}",
            p.display(),
            self.logs()
        );
    }

    fn wait_path(&self, p: &Path, what: &str) {
        let up = poll_until(STARTUP, || p.exists());
        assert!(up, "{what} did not appear\n{}", self.logs());
    }

    /// Poll `addr` until it greets with `prefix` (bounded by `STARTUP`).
    fn wait_greeting(&self, addr: SocketAddr, prefix: &str, what: &str) {
        let up = poll_until(STARTUP, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .ok()
                .is_some_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    greets(&mut s, prefix)
                })
        });
        assert!(up, "{what} did not start on {addr}\n{}", self.logs());
    }

    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(&self.dovecot_log).unwrap_or_default()
    }

    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(&self.postfix_log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let extra = |n: &str| std::fs::read_to_string(self.path().join(n)).unwrap_or_default();
        format!(
            "--- dovecot.log\n{}\n--- dovecot.stderr\n{}\n--- postfix.log\n{}\n--- postfix.stderr\n{}",
            self.dovecot_log(),
            extra("dovecot.stderr"),
            self.postfix_log(),
            extra("postfix.stderr")
        )
    }

    /// Wait (bounded) until `log()` contains `needle`; true if it did.
    /// (Dovecot and Postfix write text logs; frontdoor's are read as events.)
    pub fn wait_log(&self, log: fn(&Self) -> String, needle: &str, within: Duration) -> bool {
        poll_until(within, || log(self).contains(needle))
    }

    /// Files of `user`'s INBOX (`new/` and `cur/`), for delivery checks.
    pub fn inbox_files(&self, user: &str) -> Vec<PathBuf> {
        let (local, domain) = user.split_once('@').unwrap();
        let base = self.path().join("mail").join(domain).join(local);
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(base.join(sub)) {
                out.extend(rd.flatten().map(|e| e.path()));
            }
        }
        out
    }
}

/// The stream's first bytes start with `prefix` (read bounded by 5 s).
fn greets(s: &mut impl Read, prefix: &str) -> bool {
    let mut buf = [0u8; 256];
    matches!(s.read(&mut buf), Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with(prefix))
}

fn stop(child: &mut Option<Child>) {
    let Some(mut c) = child.take() else { return };
    // SIGTERM lets each master stop its own children.
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    if poll_until(Duration::from_secs(10), || {
        matches!(c.try_wait(), Ok(Some(_)))
    }) {
        return;
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for MailStack {
    fn drop(&mut self) {
        stop(&mut self.postfix);
        stop(&mut self.dovecot);
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Run the Python client script (tests/interop/client.py) with `args`;
/// returns (success, stdout, stderr).
pub fn python(args: &[&str]) -> (bool, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for the interop clients ({e}): {APT}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
