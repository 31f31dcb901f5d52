//! The Debian package, installed on this machine as an operator would:
//! `dpkg -i`, the files and the user it makes, `frontdoor check` on the
//! installed configuration, `systemd-analyze verify` on the installed unit,
//! the unit's own command line run as the unit runs it (its user, its
//! capability, its environment, its runtime directory) serving TLS, an
//! upgrade and a remove that keep the data, and a purge that leaves nothing.
//!
//! The package is `target/debian/frontdoor_*.deb` as `cargo deb` builds it
//! (CI builds it before the tests); when it is missing or older than its
//! packaging files, the test runs `cargo deb --locked` itself (slow).
//! Needs root, dpkg, adduser, openssl, systemd (for `systemd-analyze`),
//! util-linux (`unshare`, `nsenter`, `setpriv`) and iproute2. The service
//! runs in a network namespace of its own, so port 443 of the host is never
//! touched; the package is purged on the way out, pass or fail.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::poll_until;

const PKG: &str = "frontdoor";
const USER: &str = "frontdoor";
const CONFIG: &str = "/etc/frontdoor/frontdoor.yaml";
const REGISTRY: &str = "/etc/frontdoor/keys.yaml";
const STATE: &str = "/var/lib/frontdoor";
const CERT: &str = "/var/lib/frontdoor/tls/frontdoor.crt";
const KEY: &str = "/var/lib/frontdoor/tls/frontdoor.key";
const UNIT: &str = "/usr/lib/systemd/system/frontdoor.service";
const ENABLED_LINK: &str = "/etc/systemd/system/multi-user.target.wants/frontdoor.service";
const BIN: &str = "/usr/bin/frontdoor";
const SERVE_WAIT: Duration = Duration::from_secs(20);
const STOP_WAIT: Duration = Duration::from_secs(40);
const NEED: &str = "run as root with dpkg, adduser, openssl, systemd, util-linux and iproute2 installed (bash .ci/setup)";

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} ({NEED})"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run and require success; return stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn installed() -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}", PKG]));
    out.status.success() && text(&out.stdout).trim() != "not-installed"
}

/// Purges the package (and stops the service this test started) when the
/// test ends, whether it passed or not.
struct Purge {
    server: Option<Child>,
}

impl Drop for Purge {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if installed() {
            let out = run(Command::new("dpkg").args(["--purge", PKG]));
            if !out.status.success() {
                eprintln!("cleanup: dpkg --purge {PKG} failed:\n{}", text(&out.stderr));
            }
        }
    }
}

/// The files the package is made of: a .deb older than any of them is stale.
fn packaging_inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<PathBuf> = ["Cargo.toml", "deploy/systemd/frontdoor.service"]
        .iter()
        .map(|p| root.join(p))
        .collect();
    for e in std::fs::read_dir(root.join("deploy/debian")).unwrap() {
        v.push(e.unwrap().path());
    }
    v
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn newest_deb(dir: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("frontdoor_") && n.ends_with(".deb")
        })
        .max_by_key(|p| mtime(p))
}

/// The built package; built here when missing or stale.
fn deb() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("debian");
    let inputs = packaging_inputs();
    let fresh = |d: &Path| inputs.iter().all(|i| mtime(i) <= mtime(d));
    if let Some(d) = newest_deb(&dir).filter(|d| fresh(d)) {
        return d;
    }
    eprintln!(
        "no current package in {}: running cargo deb --locked",
        dir.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // With the environment of a shell, not this test's: variables the test
    // harness sets would change dependencies' fingerprints and make this
    // build and the next one from a shell each rebuild the release binary.
    let mut c = Command::new(cargo);
    c.env_clear();
    for k in ["PATH", "HOME", "USER", "CARGO_HOME", "RUSTUP_HOME", "TERM"] {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    ok(c.args(["deb", "--locked", "--output"])
        .arg(&dir)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target));
    let d = newest_deb(&dir).expect("cargo deb made no frontdoor_*.deb");
    assert!(
        fresh(&d),
        "{} is still older than its packaging files",
        d.display()
    );
    d
}

/// Owner name, group name and permission bits of a path.
fn stat(p: &str) -> (String, String, u32) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let name = |db: &str, id: u32| {
        let out = ok(Command::new("getent").args([db, &id.to_string()]));
        out.split(':').next().unwrap().to_owned()
    };
    (
        name("passwd", md.uid()),
        name("group", md.gid()),
        md.mode() & 0o7777,
    )
}

fn assert_stat(p: &str, owner: &str, group: &str, mode: u32) {
    assert_eq!(
        stat(p),
        (owner.to_owned(), group.to_owned(), mode),
        "{p}: owner, group, mode (octal {mode:o} wanted)"
    );
}

/// The `[Service]` settings of a unit file, each key with all its values in order.
fn unit_settings(path: &str) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{path}: continued lines are not parsed here: {line}"
        );
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{path}: {line}"));
            out.entry(k.trim().to_owned())
                .or_default()
                .push(v.trim().to_owned());
        }
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    let v = unit.get(key)?;
    assert_eq!(v.len(), 1, "{key}= given {} times", v.len());
    Some(&v[0])
}

/// A command line of the unit as words. Only plain words are handled: a
/// quote, specifier, variable or prefix fails the test rather than being
/// misread.
fn argv(line: &str) -> Vec<String> {
    assert!(
        !line.contains(['"', '\'', '%', '$', '\\']) && !line.starts_with(['-', '@', ':', '+', '!']),
        "unit command line needs a fuller parser than this test has: {line}"
    );
    line.split_whitespace().map(str::to_owned).collect()
}

/// The unit's `Environment=` assignments (plain `K=V` words).
fn environment(unit: &BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for line in unit.get("Environment").into_iter().flatten() {
        for w in argv(line) {
            let (k, v) = w
                .split_once('=')
                .unwrap_or_else(|| panic!("Environment={line}"));
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    env
}

/// `setpriv` arguments that give a process what the unit gives it: its
/// user and group (with supplementary groups), and the ambient capabilities.
fn as_unit_user(unit: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let user = one(unit, "User").expect("the unit names a User=");
    let group = one(unit, "Group").unwrap_or(user);
    let mut a = vec![
        "setpriv".to_owned(),
        format!("--reuid={user}"),
        format!("--regid={group}"),
        "--init-groups".to_owned(),
    ];
    if let Some(caps) = one(unit, "AmbientCapabilities") {
        let list: Vec<String> = caps
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let list = list.join(",");
        a.push(format!("--inh-caps={list}"));
        a.push(format!("--ambient-caps={list}"));
    }
    if let Some(caps) = one(unit, "CapabilityBoundingSet") {
        let mut list = vec!["-all".to_owned()];
        list.extend(
            caps.split_whitespace()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())),
        );
        a.push(format!("--bounding-set={}", list.join(",")));
    }
    if one(unit, "NoNewPrivileges") == Some("yes") {
        a.push("--no-new-privs".to_owned());
    }
    a
}

/// The environment systemd gives the service, plus the unit's own.
fn unit_env(unit: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let user = one(unit, "User").unwrap();
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_owned(),
        format!("USER={user}"),
        format!("LOGNAME={user}"),
        format!("HOME={STATE}"),
        "SHELL=/usr/sbin/nologin".to_owned(),
    ];
    if let Some(d) = one(unit, "StateDirectory") {
        env.push(format!("STATE_DIRECTORY=/var/lib/{d}"));
    }
    if let Some(d) = one(unit, "RuntimeDirectory") {
        env.push(format!("RUNTIME_DIRECTORY=/run/{d}"));
    }
    env.extend(
        environment(unit)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    env
}

/// What systemd does before it starts the service: the runtime directory,
/// owned by the service's user with the unit's mode.
fn make_runtime_dir(unit: &BTreeMap<String, Vec<String>>) -> Option<String> {
    let d = format!("/run/{}", one(unit, "RuntimeDirectory")?);
    let mode = one(unit, "RuntimeDirectoryMode").unwrap_or("0755");
    let user = one(unit, "User").unwrap();
    let group = one(unit, "Group").unwrap_or(user);
    ok(Command::new("install").args(["-d", "-m", mode, "-o", user, "-g", group, &d]));
    Some(d)
}

/// `sh` script that, in a fresh network namespace, brings up `lo`, sets the
/// unit's umask and runs "$@" (setpriv ... env -i ... command).
fn in_netns(umask: &str, argv: &[String]) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--net",
        "sh",
        "-c",
        r#"ip link set lo up && umask "$0" && exec "$@""#,
        umask,
    ]);
    c.args(argv);
    c
}

fn netns_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// A TLS client in the server's network namespace: trusts only the
/// installed certificate, checks it for `localhost`, and returns what the
/// backend behind ALPN `alpn` says first (the IMAP greeting, or the status
/// page's status line for http/1.1).
fn tls_client(pid: u32, port: u16, alpn: &str) -> Output {
    tls_client_login(pid, port, alpn, "")
}

/// As [`tls_client`]; with `login` ("ADDRESS PASSWORD") over imap, also
/// logs in and prints the tagged reply.
fn tls_client_login(pid: u32, port: u16, alpn: &str, login: &str) -> Output {
    const PY: &str = r#"
import socket, ssl, sys
port, alpn, ca, login = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols([alpn])
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == alpn, s.selected_alpn_protocol()
        if alpn == "http/1.1":
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(s.version(), data.split(b"\r\n")[0].decode())
        if login:
            user, password = login.split(" ", 1)
            s.sendall(b'a1 LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
            data = b""
            while not any(l.startswith(b"a1 ") for l in data.split(b"\r\n")):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            print([l for l in data.split(b"\r\n") if l.startswith(b"a1 ")][0].decode())
"#;
    run(Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["python3", "-c", PY, &port.to_string(), alpn, CERT, login]))
}

fn port_of_config() -> u16 {
    let v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(CONFIG).unwrap()).unwrap();
    let bind = v["listeners"][0]["bind"]
        .as_str()
        .expect("listeners[0].bind");
    let addr: std::net::SocketAddr = bind.parse().unwrap();
    assert!(
        addr.ip().is_loopback(),
        "the installed default listens on loopback only: {bind}"
    );
    addr.port()
}

fn registry_names_as_user(unit: &BTreeMap<String, Vec<String>>) -> String {
    let mut a = as_unit_user(unit);
    a.extend([BIN, "keys", "--registry", REGISTRY, "list", "--json"].map(String::from));
    ok(Command::new(&a[0]).args(&a[1..]))
}

#[test]
fn package_installs_serves_upgrades_and_purges() {
    assert!(
        run(Command::new("id").arg("-u")).stdout == b"0\n",
        "this test installs a package: {NEED}"
    );
    let deb = deb();
    let mut guard = Purge { server: None };
    if installed() {
        // Left by an earlier run that could not clean up.
        ok(Command::new("dpkg").args(["--purge", PKG]));
    }
    let systemd_runs = Path::new("/run/systemd/system").is_dir();

    // ---- install
    let out = ok(Command::new("dpkg").arg("-i").arg(&deb));
    eprintln!("dpkg -i {}:\n{out}", deb.display());
    assert!(installed());

    // The user and group, a system account without a login.
    let pw = ok(Command::new("getent").args(["passwd", USER]));
    let f: Vec<&str> = pw.trim().split(':').collect();
    assert!(
        f[2].parse::<u32>().unwrap() < 1000,
        "not a system uid: {pw}"
    );
    assert_eq!(f[5], STATE, "home: {pw}");
    assert_eq!(f[6], "/usr/sbin/nologin", "shell: {pw}");
    let gr = ok(Command::new("getent").args(["group", USER]));
    assert_eq!(
        f[3],
        gr.split(':').nth(2).unwrap(),
        "primary group is {USER}: {pw} / {gr}"
    );

    // The files, their owners and modes.
    assert_stat(BIN, "root", "root", 0o755);
    assert_stat(UNIT, "root", "root", 0o644);
    assert_stat("/etc/frontdoor", "root", "root", 0o755);
    assert_stat(CONFIG, "root", "root", 0o644);
    assert_stat(REGISTRY, "root", USER, 0o640);
    assert_stat(STATE, USER, USER, 0o750);
    assert_stat(KEY, USER, USER, 0o600);
    assert_stat(CERT, USER, USER, 0o644);
    let conffiles = ok(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", PKG]));
    assert!(
        conffiles.contains(CONFIG),
        "{CONFIG} is not a conffile: {conffiles}"
    );
    // Enabled even where systemd does not run (deb-systemd-helper's link).
    assert_eq!(
        std::fs::canonicalize(ENABLED_LINK).ok(),
        std::fs::canonicalize(UNIT).ok(),
        "the unit is not enabled ({ENABLED_LINK})"
    );
    if systemd_runs {
        // Started by postinst: wait (bounded) for it, then stop it so that
        // the run below has the runtime directory and the data to itself.
        let mut state = String::new();
        assert!(
            poll_until(SERVE_WAIT, || {
                let out = run(Command::new("systemctl").args(["is-active", "frontdoor"]));
                state = text(&out.stdout).trim().to_owned();
                state == "active"
            }),
            "systemd runs here and the unit is not active: {state}"
        );
        ok(Command::new("systemctl").args(["stop", "frontdoor"]));
    }

    // The installed configuration and unit verify.
    let out = ok(Command::new(BIN).args(["check", "--config", CONFIG]));
    assert!(out.contains("OK"), "{out}");
    let out = run(Command::new("systemd-analyze").args(["verify", UNIT]));
    let complaints: Vec<String> = text(&out.stderr)
        .lines()
        .filter(|l| l.contains("frontdoor"))
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify {UNIT} ({}):\n{}",
        out.status,
        text(&out.stderr)
    );

    // Root pins a key with `frontdoor keys add`; the file keeps its owner
    // and mode, so the service's user still reads it.
    let keys = tempfile::tempdir().unwrap();
    ok(Command::new(BIN)
        .args(["keys", "gen", "--name", "test-phone", "--out"])
        .arg(keys.path()));
    ok(Command::new(BIN)
        .args([
            "keys",
            "--registry",
            REGISTRY,
            "add",
            "--name",
            "test-phone",
        ])
        .args(["--account", "alice@localhost", "--login", "alice@localhost"])
        .arg(keys.path().join("test-phone.crt")));
    assert_stat(REGISTRY, "root", USER, 0o640);
    let unit = unit_settings(UNIT);
    assert!(registry_names_as_user(&unit).contains("\"test-phone\""));

    // An account of the bundled servers, made as the docs say: as the
    // service's user, so its files stay the service's.
    let mut add = Command::new("runuser")
        .args(["-u", USER, "--", BIN, "accounts", "add", "alice@localhost"])
        .args(["--config", CONFIG])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("runuser: {e} ({NEED})"));
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(b"correct horse battery staple\n").unwrap();
    }
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "accounts add: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // ---- the unit's commands, run as the unit runs them
    let runtime = make_runtime_dir(&unit);
    let umask = one(&unit, "UMask").unwrap_or("0022").to_owned();
    let mut prefix = as_unit_user(&unit);
    prefix.extend(["env".to_owned(), "-i".to_owned()]);
    prefix.extend(unit_env(&unit));
    for pre in unit.get("ExecStartPre").into_iter().flatten() {
        let mut a = prefix.clone();
        a.extend(argv(pre));
        ok(&mut in_netns(&umask, &a));
    }
    let mut a = prefix.clone();
    a.extend(argv(one(&unit, "ExecStart").expect("ExecStart=")));
    let port = port_of_config();
    let log_path = keys.path().join("serve.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let child = in_netns(&umask, &a)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("unshare: {e} ({NEED})"));
    let pid = child.id();
    guard.server = Some(child);

    // Wait (bounded) until it answers TLS on its port in its namespace.
    let host_ns = netns_of(std::process::id());
    let (mut imap, mut entered, mut last_err) = (None, false, String::new());
    let server = guard.server.as_mut().unwrap();
    poll_until(SERVE_WAIT, || {
        if netns_of(pid).is_some() && netns_of(pid) != host_ns {
            entered = true;
            let out = tls_client(pid, port, "imap");
            if out.status.success() {
                imap = Some(text(&out.stdout));
                return true;
            }
            last_err = text(&out.stderr);
        }
        if let Some(st) = server.try_wait().unwrap() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the unit's ExecStart exited ({st}):\n{log}");
        }
        false
    });
    let imap = imap.unwrap_or_else(|| {
        assert!(entered, "the server did not enter its namespace");
        panic!("no TLS on port {port} after {SERVE_WAIT:?}: {last_err}")
    });
    assert!(
        imap.starts_with("TLSv1.3 * OK"),
        "IMAP through the front door: {imap}"
    );
    let out = tls_client_login(
        pid,
        port,
        "imap",
        "alice@localhost correct horse battery staple",
    );
    assert!(
        text(&out.stdout).contains("\na1 OK"),
        "IMAP LOGIN through the front door: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = tls_client(pid, port, "http/1.1");
    assert!(out.status.success(), "status page: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("TLSv1.3 HTTP/1.1 200"),
        "status page: {}",
        text(&out.stdout)
    );
    // The bundled servers' sockets are in the runtime directory, the
    // service's own.
    let runtime = runtime.expect("RuntimeDirectory=");
    assert_stat(&runtime, USER, USER, 0o750);
    for sock in ["imap.sock", "submission.sock"] {
        let p = format!("{runtime}/{sock}");
        use std::os::unix::fs::FileTypeExt;
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(md.file_type().is_socket(), "{p} is not a socket");
        assert_eq!(stat(&p).0, USER, "{p}");
    }

    // SIGTERM, as `systemctl stop` sends: it drains and exits 0.
    ok(Command::new("kill").args(["-TERM", &pid.to_string()]));
    let server = guard.server.as_mut().unwrap();
    let mut status = None;
    assert!(
        poll_until(STOP_WAIT, || {
            status = server.try_wait().unwrap();
            status.is_some()
        }),
        "still running {STOP_WAIT:?} after SIGTERM"
    );
    let status = status.unwrap();
    guard.server = None;
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The service read the registry root had edited.
    assert!(
        log.contains("registry loaded, 1 keys"),
        "the service did not load the pinned key:\n{log}"
    );
    assert!(status.success(), "exit after SIGTERM: {status}\n{log}");

    // ---- upgrade (the same version again): the certificate, the registry
    // and the configuration stay as they are.
    let cert_before = std::fs::read(CERT).unwrap();
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        std::fs::read(CERT).unwrap(),
        cert_before,
        "the certificate was replaced"
    );
    assert!(
        registry_names_as_user(&unit).contains("\"test-phone\""),
        "the registry lost its key"
    );
    assert_stat(REGISTRY, "root", USER, 0o640);

    // ---- remove: the data, the registry and the user stay.
    ok(Command::new("dpkg").args(["--remove", PKG]));
    for p in [REGISTRY, CERT, KEY, STATE] {
        assert!(Path::new(p).exists(), "{p} is gone after remove");
    }
    assert!(!Path::new(BIN).exists() && !Path::new(UNIT).exists());
    ok(Command::new("getent").args(["passwd", USER]));

    // ---- purge: nothing is left.
    ok(Command::new("dpkg").args(["--purge", PKG]));
    assert!(!installed(), "dpkg still knows {PKG}");
    for p in [
        "/etc/frontdoor",
        STATE,
        &runtime,
        UNIT,
        ENABLED_LINK,
        BIN,
        "/usr/share/doc/frontdoor",
    ] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{p} is left after purge"
        );
    }
    for db in ["passwd", "group"] {
        let out = run(Command::new("getent").args([db, USER]));
        assert!(
            !out.status.success(),
            "{db} entry {USER} is left after purge: {}",
            text(&out.stdout)
        );
    }
    // deb-systemd-helper's state (enabled, masked) is gone too.
    let out = ok(Command::new("find").args(["/var/lib/systemd", "-name", "*frontdoor*"]));
    assert!(
        out.trim().is_empty(),
        "systemd state is left after purge: {out}"
    );
    let out = run(Command::new("dpkg-statoverride").arg("--list"));
    assert!(
        !text(&out.stdout).contains(USER),
        "a statoverride is left: {}",
        text(&out.stdout)
    );
}
