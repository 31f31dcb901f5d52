//! The Dovecot/Postfix interop client script (`tests/interop/client.py`),
//! unchanged, against frontdoor's bundled backends: the two deployments
//! stay interchangeable for clients.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{write_cert, Frontdoor};

fn client(port: u16, ca: &Path, mode: &str, args: &[&str]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/client.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            mode,
            "--port",
            &port.to_string(),
            "--src",
            "127.0.0.2",
            "--ca",
        ])
        .arg(ca)
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn account(config: &Path, addr: &str, password: &str) {
    use std::io::Write;
    let mut c = Command::new(Frontdoor::bin())
        .args(["accounts", "add", addr, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(c.wait().unwrap().success());
}

#[test]
fn the_interop_client_script_works_against_the_bundled_backends() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (crt, key) = write_cert(d, "server", &["mail.example.org"]);
    // A client key whose certificate claims someone else (its CN is never used).
    let kp = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mallory@example.org");
    let cert = params.self_signed(&kp).unwrap();
    std::fs::write(d.join("client.crt"), cert.pem()).unwrap();
    std::fs::write(d.join("client.key"), kp.serialize_pem()).unwrap();
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
        d.join("keys.yaml"),
        format!("keys:\n  - name: alice-laptop\n    fingerprint: \"{fp}\"\n    account: alice@example.org\n    login: alice@example.org\n    imap_preauth: false\n"),
    )
    .unwrap();
    let data = d.join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\ntls:\n  certificates:\n    - {{ cert: {}, key: {} }}\nroutes:\n  imap: {{ alpn: [imap], backend: \"unix:data/imap.sock\" }}\n  smtp: {{ alpn: [smtp], backend: \"unix:data/submission.sock\" }}\nclient_auth: {{ registry: keys.yaml, unknown_key: reject }}\nmail:\n  domains: [example.org]\n  data_dir: data\n  imap: {{ listen: \"unix:data/imap.sock\" }}\n  submission: {{ listen: \"unix:data/submission.sock\" }}\n",
        crt.display(),
        key.display()
    );
    std::fs::write(d.join("frontdoor.yaml"), cfg).unwrap();
    account(
        &d.join("frontdoor.yaml"),
        "alice@example.org",
        "alice password 1",
    );
    account(
        &d.join("frontdoor.yaml"),
        "bob@example.org",
        "bob password 22",
    );
    let fd = Frontdoor::start(&d.join("frontdoor.yaml"), 1);
    let port = fd.addrs[0].port();
    let (c, k) = (d.join("client.crt"), d.join("client.key"));
    let (c, k) = (c.to_str().unwrap(), k.to_str().unwrap());

    // Password login (as against Dovecot).
    let (ok, out) = client(
        port,
        &crt,
        "imap",
        &["--login", "bob@example.org", "bob password 22"],
    );
    assert!(
        ok && out.contains(r#""alpn": "imap""#),
        "{out}\n{}",
        fd.logs()
    );
    // SMTP with AUTH, delivered, then fetched over the front door.
    let token = format!("token-{}", std::process::id());
    let (ok, out) = client(
        port,
        &crt,
        "smtp",
        &[
            "--login",
            "alice@example.org",
            "alice password 1",
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            &token,
        ],
    );
    assert!(ok, "{out}\n{}", fd.logs());
    let (ok, out) = client(
        port,
        &crt,
        "imap",
        &[
            "--login",
            "bob@example.org",
            "bob password 22",
            "--wait-for",
            &token,
        ],
    );
    assert!(ok, "{out}");
    // The pinned key: EXTERNAL over IMAP (imap_preauth: false), submission without AUTH.
    let (ok, out) = client(port, &crt, "imap", &["--cert", c, "--key", k, "--external"]);
    assert!(
        ok && out.contains(r#""login": "OK""#),
        "{out}\n{}",
        fd.logs()
    );
    let token2 = format!("{token}-key");
    let (ok, out) = client(
        port,
        &crt,
        "smtp",
        &[
            "--cert",
            c,
            "--key",
            k,
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--body",
            &token2,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = client(
        port,
        &crt,
        "imap",
        &[
            "--login",
            "bob@example.org",
            "bob password 22",
            "--wait-for",
            &token2,
        ],
    );
    assert!(ok, "{out}");
    // A sender the key's account does not own is refused.
    let (ok, out) = client(
        port,
        &crt,
        "smtp",
        &[
            "--cert",
            c,
            "--key",
            k,
            "--from",
            "bob@example.org",
            "--to",
            "bob@example.org",
            "--body",
            "forged",
        ],
    );
    assert!(!ok && out.contains("5.7.1"), "{out}");
    // Without the key, EXTERNAL has no user.
    let (ok, out) = client(port, &crt, "imap", &["--external"]);
    assert!(!ok && out.contains(r#""login": "NO""#), "{out}");
    // The certificate's own CN is in no field of any event.
    let events = fd.events().events();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| !e.to_string().contains("mallory")),
        "{}",
        fd.logs()
    );
}
