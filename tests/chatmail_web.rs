//! The chatmail relay's web side (`backend: "builtin:chatmail"`) through the
//! real binary over TLS, driven by Python's http.client/ssl/xml: `POST /new`
//! (shape, rate limit, "no new accounts"), the browser redirect, autoconfig
//! with exactly the served ports, mta-sts.txt, the invite page, static files
//! and traversal, and a path route that upgrades to a WebSocket echoed by a
//! backend which reports the client address it was given.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

const DOMAIN: &str = "chat.example.org";

/// Client and test backend, one script; each command prints one JSON line.
const PY: &str = r#"
import base64, hashlib, http.client, json, os, socket, ssl, sys
import xml.etree.ElementTree as ET

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["http/1.1"])
    return c

def request(port, method, path, host, headers=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx(), timeout=10)
    h = {"Host": host}
    h.update(headers or {})
    conn.request(method, path, headers=h)
    r = conn.getresponse()
    body = r.read().decode("utf-8", "replace")
    out = {"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()}, "body": body}
    conn.close()
    return out

def autoconfig(port, path):
    r = request(port, "GET", path, "autoconfig." + sys.argv[3])
    root = ET.fromstring(r["body"])
    servers = []
    for tag in ("incomingServer", "outgoingServer"):
        for s in root.iter(tag):
            servers.append({
                "type": s.get("type"),
                "hostname": s.findtext("hostname"),
                "port": int(s.findtext("port")),
                "socketType": s.findtext("socketType"),
                "username": s.findtext("username"),
            })
    return {"status": r["status"], "ctype": r["headers"].get("content-type"),
            "domain": root.findtext("emailProvider/domain"), "servers": servers}

def page(port):
    r = request(port, "GET", "/", sys.argv[3])
    b = r["body"]
    i, j = b.find("<svg"), b.find("</svg>")
    svg = ET.fromstring(b[i:j + 6]) if i >= 0 and j > i else None
    return {"status": r["status"], "headers": r["headers"],
            "svg_tag": svg.tag if svg is not None else None,
            "svg_paths": len(svg.findall("{http://www.w3.org/2000/svg}path")) if svg is not None else 0,
            "body": b}

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b

def read_frame(s):
    h = recv_exact(s, 2)
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(s, 2), "big")
    mask = recv_exact(s, 4) if h[1] & 0x80 else None
    data = recv_exact(s, n)
    if mask:
        data = bytes(b ^ mask[k % 4] for k, b in enumerate(data))
    return h[0] & 0x0F, data

def frame(data, masked):
    n = len(data)
    assert n < 65536
    bit = 0x80 if masked else 0
    head = bytes([0x81]) + (bytes([bit | n]) if n < 126 else bytes([bit | 126]) + n.to_bytes(2, "big"))
    if masked:
        m = os.urandom(4)
        return head + m + bytes(b ^ m[k % 4] for k, b in enumerate(data))
    return head + data

def read_head(s):
    b = b""
    while b"\r\n\r\n" not in b:
        c = s.recv(1)
        if not c:
            raise EOFError("closed in head")
        b += c
        if len(b) > 16384:
            raise ValueError("head too long")
    lines = b.decode().split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], hdrs

def ws_backend():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(30)
    print(json.dumps({"port": ls.getsockname()[1]}), flush=True)
    # First a plain request (/ping), then the upgrade (/relay).
    s, _ = ls.accept()
    s.settimeout(10)
    line, h = read_head(s)
    body = json.dumps({"line": line, "x-real-ip": h.get("x-real-ip"), "connection": h.get("connection")}).encode()
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    s.close()
    s, _ = ls.accept()
    s.settimeout(10)
    line, h = read_head(s)
    key = h["sec-websocket-key"][0]
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    op, data = read_frame(s)
    seen = {"line": line, "x-real-ip": h.get("x-real-ip"), "x-forwarded-for": h.get("x-forwarded-for"),
            "upgrade": h.get("upgrade"), "echo": data.decode()}
    s.sendall(frame(json.dumps(seen).encode(), masked=False))
    s.close()

def ws_client(port, path):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx().wrap_socket(raw, server_hostname=sys.argv[3])
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n" % (path, sys.argv[3], key)).encode())
    line, h = read_head(s)
    expect = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    ok = h.get("sec-websocket-accept", [None])[0] == expect
    s.sendall(frame(b"hello through frontdoor", masked=True))
    op, data = read_frame(s)
    print(json.dumps({"status_line": line, "accept_ok": ok, "opcode": op, "backend_saw": json.loads(data)}))

cmd = sys.argv[1]
if cmd == "ws-backend":
    ws_backend()
elif cmd == "ws-client":
    ws_client(int(sys.argv[2]), sys.argv[4])
elif cmd == "request":
    port, method, path, host = int(sys.argv[2]), sys.argv[4], sys.argv[5], sys.argv[6]
    hdrs = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
    print(json.dumps(request(port, method, path, host, hdrs)))
elif cmd == "autoconfig":
    print(json.dumps(autoconfig(int(sys.argv[2]), sys.argv[4])))
elif cmd == "page":
    print(json.dumps(page(int(sys.argv[2]))))
"#;

fn py(dir: &Path, args: &[&str]) -> serde_json::Value {
    let script = dir.join("web.py");
    if !script.exists() {
        std::fs::write(&script, PY).unwrap();
    }
    let out = Command::new("timeout")
        .arg("30")
        .arg("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn request(dir: &Path, port: u16, method: &str, path: &str, host: &str) -> serde_json::Value {
    let p = port.to_string();
    py(dir, &["request", &p, DOMAIN, method, path, host])
}

/// The WebSocket backend, running until it has echoed one frame.
struct WsBackend {
    child: Child,
    port: u16,
}

impl WsBackend {
    fn start(dir: &Path) -> Self {
        let script = dir.join("web.py");
        std::fs::write(&script, PY).unwrap();
        let mut child = Command::new("timeout")
            .args(["60", "python3"])
            .arg(&script)
            .arg("ws-backend")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let port = v["port"].as_u64().unwrap() as u16;
        Self { child, port }
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nothing listens on.
fn dead_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A frontdoor config: one ALPN listener (imap, smtp, web), `extra`
/// listeners, `chatmail` as the `mail.chatmail` flow map.
fn start(dir: &Path, extra: &str, n_listeners: usize, chatmail: &str) -> Frontdoor {
    let (c, k) = write_cert(dir, "server", &[DOMAIN, &format!("mta-sts.{DOMAIN}")]);
    // Mail routes whose backends are not running: autoconfig reads the
    // config, it does not connect.
    let dead = dead_addr();
    let cfg = format!(
        r#"
listeners:
  - bind: "127.0.0.1:0"
{extra}
tls:
  certificates:
    - {{ cert: {c}, key: {k} }}
routes:
  imap: {{ alpn: [imap], backend: "{dead}" }}
  smtp: {{ alpn: [smtp], backend: "{dead}" }}
  web: {{ alpn: ["http/1.1"], backend: "builtin:chatmail" }}
mail:
  domains: [{DOMAIN}]
  data_dir: data
  chatmail: {chatmail}
"#,
        c = c.display(),
        k = k.display(),
    );
    let p = dir.join("frontdoor.yaml");
    std::fs::write(&p, cfg).unwrap();
    Frontdoor::start(&p, n_listeners)
}

fn ports_of(servers: &serde_json::Value, typ: &str) -> Vec<u64> {
    let mut v: Vec<u64> = servers
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == typ)
        .map(|s| {
            assert_eq!(s["socketType"], "SSL", "{s}");
            assert_eq!(s["hostname"], DOMAIN, "{s}");
            assert_eq!(s["username"], "%EMAILADDRESS%", "{s}");
            s["port"].as_u64().unwrap()
        })
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_web_side() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let www = d.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from www\n").unwrap();
    std::fs::write(
        www.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    std::fs::write(d.join("secret"), "SECRET-OUTSIDE-WWW\n").unwrap();
    std::os::unix::fs::symlink(d.join("secret"), www.join("leak")).unwrap();
    let ws = WsBackend::start(d);
    let fd = start(
        d,
        "",
        1,
        &format!(
            "{{ new_account_rate_per_minute: 3, www_dir: www, paths: [{{ prefix: /relay, backend: \"127.0.0.1:{ws}\" }}, {{ prefix: /ping, backend: \"127.0.0.1:{ws}\" }}, {{ prefix: /generate_204, backend: \"{dead}\" }}] }}",
            ws = ws.port,
            dead = dead_addr(),
        ),
    );
    let port = fd.addrs[0].port();

    // POST /new: newemail.py's JSON, three times, then the rate limit.
    for path in ["/new", "/cgi-bin/newemail.py", "/new"] {
        let r = request(d, port, "POST", path, DOMAIN);
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["headers"]["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2, "only email and password: {v}");
        let email = v["email"].as_str().unwrap();
        let password = v["password"].as_str().unwrap();
        let (local, domain) = email.split_once('@').unwrap();
        assert_eq!(domain, DOMAIN);
        assert_eq!(local.len(), 9, "{email}");
        assert!(
            local
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{email}"
        );
        // password_min_length (9) + 3, printable ASCII without space.
        assert_eq!(password.len(), 12, "{password}");
        assert!(password.bytes().all(|b| b.is_ascii_graphic()));
    }
    let r = request(d, port, "POST", "/new", DOMAIN);
    assert_eq!(r["status"], 429, "{r}");
    let v: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("too many new accounts"),
        "{v}"
    );
    assert_eq!(r["headers"]["retry-after"], "60");

    // A browser's GET goes to the app.
    let r = request(d, port, "GET", "/new", DOMAIN);
    assert_eq!(r["status"], 301, "{r}");
    assert_eq!(
        r["headers"]["location"],
        format!("dcaccount:https://{DOMAIN}/new")
    );

    // Autoconfig: the one listener, for IMAP and SMTP, both paths.
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a%40b",
        "/mail/config-v1.1.xml",
    ] {
        let a = py(d, &["autoconfig", &port.to_string(), DOMAIN, path]);
        assert_eq!(a["status"], 200, "{a}");
        assert!(a["ctype"].as_str().unwrap().contains("xml"));
        assert_eq!(a["domain"], DOMAIN);
        assert_eq!(ports_of(&a["servers"], "imap"), vec![port as u64]);
        assert_eq!(ports_of(&a["servers"], "smtp"), vec![port as u64]);
    }

    // MTA-STS on the mta-sts. host.
    let r = request(
        d,
        port,
        "GET",
        "/.well-known/mta-sts.txt",
        &format!("mta-sts.{DOMAIN}"),
    );
    assert_eq!(r["status"], 200);
    assert_eq!(
        r["body"],
        format!("version: STSv1\nmode: enforce\nmx: {DOMAIN}\nmax_age: 2419200\n")
    );

    // The invite page (www has no index.html).
    let p = py(d, &["page", &port.to_string(), DOMAIN]);
    assert_eq!(p["status"], 200, "{p}");
    assert_eq!(p["svg_tag"], "{http://www.w3.org/2000/svg}svg");
    assert!(p["svg_paths"].as_u64().unwrap() >= 1);
    let body = p["body"].as_str().unwrap();
    assert!(body.contains(&format!("dcaccount:{DOMAIN}")));
    assert!(body.contains(&format!("dcaccount:https://{DOMAIN}/new")));
    let h = &p["headers"];
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let csp = h["content-security-policy"].as_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // Static files, HEAD, 404, and no way out of www_dir.
    let r = request(d, port, "GET", "/hello.txt", DOMAIN);
    assert_eq!(r["status"], 200);
    assert_eq!(r["body"], "hello from www\n");
    assert_eq!(r["headers"]["content-type"], "text/plain; charset=utf-8");
    let r = request(d, port, "GET", "/logo.svg", DOMAIN);
    assert_eq!(r["headers"]["content-type"], "image/svg+xml");
    let r = request(d, port, "HEAD", "/hello.txt", DOMAIN);
    assert_eq!(r["status"], 200);
    assert_eq!(r["headers"]["content-length"], "15");
    assert_eq!(r["body"], "");
    assert_eq!(
        request(d, port, "GET", "/missing.txt", DOMAIN)["status"],
        404
    );
    for bad in [
        "/../secret",
        "/%2e%2e/secret",
        "/a/%2E%2E/%2e%2e/secret",
        "/leak",
    ] {
        let r = request(d, port, "GET", bad, DOMAIN);
        assert_eq!(r["status"], 400, "{bad}: {r}");
        assert!(!r["body"].as_str().unwrap().contains("SECRET"), "{bad}");
    }
    assert_eq!(
        request(d, port, "DELETE", "/hello.txt", DOMAIN)["status"],
        405
    );

    // A plain request on a path route: the backend gets the real address
    // and no hop-by-hop headers of the client's.
    let r = py(
        d,
        &[
            "request",
            &port.to_string(),
            DOMAIN,
            "GET",
            "/ping?x=1",
            DOMAIN,
            r#"{"X-Real-IP": "6.6.6.6", "Connection": "keep-alive, X-Secret", "X-Secret": "1"}"#,
        ],
    );
    assert_eq!(r["status"], 200, "{r}");
    let saw: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(saw["line"], "GET /ping?x=1 HTTP/1.1");
    assert_eq!(saw["x-real-ip"], serde_json::json!(["127.0.0.1"]));
    // A path route whose backend is down.
    let r = request(d, port, "GET", "/generate_204", DOMAIN);
    assert_eq!(r["status"], 502, "{r}");
    // A request head over the bound is refused, not read on.
    let r = py(
        d,
        &[
            "request",
            &port.to_string(),
            DOMAIN,
            "GET",
            "/hello.txt",
            DOMAIN,
            &format!(r#"{{"X-Big": "{}"}}"#, "a".repeat(20_000)),
        ],
    );
    assert_eq!(r["status"], 431, "{r}");

    // A path route upgraded to a WebSocket, echoed by the backend, which
    // got the real client address and not the client's forged one.
    let w = py(d, &["ws-client", &port.to_string(), DOMAIN, "/relay"]);
    assert!(
        w["status_line"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/1.1 101"),
        "{w}"
    );
    assert_eq!(w["accept_ok"], true, "{w}");
    assert_eq!(w["opcode"], 1);
    let saw = &w["backend_saw"];
    assert_eq!(saw["echo"], "hello through frontdoor");
    assert_eq!(saw["line"], "GET /relay HTTP/1.1");
    assert_eq!(saw["x-real-ip"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(saw["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(saw["upgrade"], serde_json::json!(["websocket"]));
    let relayed = fd
        .events()
        .wait_event(T, |e| e.get("end").is_some() && e.get("protocol").is_some())
        .await
        .unwrap_or_else(|| panic!("no upgrade event: {}", fd.logs()));
    assert_eq!(str_field(&relayed, "protocol"), "websocket", "{relayed}");
    // One log line per request, with the client's path and the status.
    let requests: Vec<(String, String, u64)> = fd
        .events()
        .events()
        .iter()
        .filter(|e| e.get("served").is_some() && e.get("path").is_some())
        .map(|e| {
            (
                str_field(e, "method"),
                str_field(e, "path"),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for want in [("POST", "/new", 429), ("GET", "/generate_204", 502)] {
        assert!(
            requests
                .iter()
                .any(|(m, p, s)| (m.as_str(), p.as_str(), *s) == want),
            "{want:?} not logged: {requests:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_relay_with_fixed_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let www = d.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "<p>the operator's own page</p>\n").unwrap();
    let fd = start(
        d,
        "  - { bind: \"127.0.0.1:0\", route: imap }\n  - { bind: \"127.0.0.1:0\", route: smtp }",
        3,
        "{ new_accounts: false, www_dir: www }",
    );
    let (alpn, imap, smtp) = (fd.addrs[0].port(), fd.addrs[1].port(), fd.addrs[2].port());

    // A request head that never ends is cut off after 10 s (checked at the
    // end of this test, while the rest runs).
    let slow = tokio::spawn({
        let addr = fd.addrs[0];
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut c = connect(addr, &["http/1.1"], DOMAIN).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: chat.example.org\r\n")
                .await
                .unwrap();
            let t0 = std::time::Instant::now();
            let mut buf = [0u8; 512];
            let mut got = Vec::new();
            let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            (ended.is_ok(), t0.elapsed(), got)
        }
    });

    let r = request(d, alpn, "POST", "/new", DOMAIN);
    assert_eq!(r["status"], 403, "{r}");
    let v: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    // `reason` is what Delta Chat shows the user.
    assert_eq!(v["reason"], "this relay does not accept new accounts");

    let a = py(
        d,
        &[
            "autoconfig",
            &alpn.to_string(),
            DOMAIN,
            "/.well-known/autoconfig/mail/config-v1.1.xml",
        ],
    );
    let mut want_imap = vec![alpn as u64, imap as u64];
    want_imap.sort_unstable();
    let mut want_smtp = vec![alpn as u64, smtp as u64];
    want_smtp.sort_unstable();
    assert_eq!(ports_of(&a["servers"], "imap"), want_imap, "{a}");
    assert_eq!(ports_of(&a["servers"], "smtp"), want_smtp, "{a}");

    let (ended, after, got) = slow.await.unwrap();
    assert!(ended, "a never-ending request head was not cut off");
    assert!(
        after >= std::time::Duration::from_secs(9),
        "cut off too early: {after:?}"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // www_dir's index.html takes the place of the invite page.
    let r = request(d, alpn, "GET", "/", DOMAIN);
    assert_eq!(r["status"], 200);
    assert_eq!(r["body"], "<p>the operator's own page</p>\n");
    assert_eq!(r["headers"]["content-type"], "text/html; charset=utf-8");
}
