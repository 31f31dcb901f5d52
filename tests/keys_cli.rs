//! `frontdoor keys …` end to end: the real binary against files made at
//! test time with openssl, checked with openssl and Python's ssl module.
//! Needs `openssl` and `python3` on PATH (the tests fail, not skip,
//! without them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

const BIN: &str = env!("CARGO_BIN_EXE_frontdoor");

fn frontdoor(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run frontdoor")
}

fn ok(args: &[&str]) -> String {
    let o = frontdoor(args);
    assert!(
        o.status.success(),
        "frontdoor {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// stderr of a command that must fail with exit code 1.
fn fails(args: &[&str]) -> String {
    let o = frontdoor(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "frontdoor {args:?} should fail: {o:?}"
    );
    String::from_utf8(o.stderr).unwrap()
}

/// Run a shell pipeline; panics (test fails) if it fails, e.g. when a tool is missing.
fn sh(cmd: &str, dir: &Path) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    assert!(
        o.status.success(),
        "`{cmd}` failed (is openssl/python3 installed?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// openssl key + self-signed cert `NAME.key`/`NAME.crt` of the given genpkey algorithm options.
fn openssl_key(dir: &Path, name: &str, genpkey: &str) -> (PathBuf, PathBuf) {
    sh(
        &format!(
            "openssl genpkey {genpkey} -out {name}.key 2>/dev/null && \
             openssl req -x509 -new -key {name}.key -subj /CN={name} -days 1 -out {name}.crt"
        ),
        dir,
    );
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    )
}

/// DESIGN §3's pipeline, with `sha256:` in front.
fn openssl_fingerprint(dir: &Path, crt: &Path) -> String {
    let b64 = sh(
        &format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            crt.display()
        ),
        dir,
    );
    format!("sha256:{}", b64.trim())
}

const KINDS: [(&str, &str); 4] = [
    ("ed", "-algorithm ed25519"),
    ("p256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256"),
    ("p384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384"),
    ("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"),
];

#[test]
fn fingerprint_matches_openssl_pipeline_for_every_key_type_and_file_form() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for (name, alg) in KINDS {
        let (key, crt) = openssl_key(dir, name, alg);
        let want = openssl_fingerprint(dir, &crt);
        assert!(want.len() == 51 && want.ends_with('='), "{want}");
        // Certificate PEM and DER, public key PEM, private key PKCS#8 PEM.
        sh(
            &format!("openssl x509 -in {name}.crt -outform der -out {name}.der"),
            dir,
        );
        sh(
            &format!("openssl pkey -in {name}.key -pubout -out {name}.pub"),
            dir,
        );
        let mut files = vec![
            crt.clone(),
            dir.join(format!("{name}.der")),
            dir.join(format!("{name}.pub")),
            key,
        ];
        // Traditional forms: SEC1 for EC, PKCS#1 for RSA.
        if name.starts_with('p') {
            sh(&format!("openssl ec -in {name}.key -out {name}.sec1 2>/dev/null && grep -q 'BEGIN EC PRIVATE KEY' {name}.sec1"), dir);
            files.push(dir.join(format!("{name}.sec1")));
        }
        if name == "rsa" {
            sh(&format!("openssl rsa -in {name}.key -traditional -out {name}.pkcs1 2>/dev/null && grep -q 'BEGIN RSA PRIVATE KEY' {name}.pkcs1"), dir);
            files.push(dir.join(format!("{name}.pkcs1")));
        }
        for f in files {
            let got = ok(&["keys", "fingerprint", f.to_str().unwrap()]);
            assert_eq!(got.trim(), want, "{name}: {}", f.display());
        }
    }
}

#[test]
fn fingerprint_of_junk_says_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("junk.pem");
    std::fs::write(&f, "hello\n").unwrap();
    let e = fails(&["keys", "fingerprint", f.to_str().unwrap()]);
    assert!(
        e.contains("junk.pem: not a certificate, public key or private key"),
        "{e}"
    );
}

#[test]
fn gen_output_loads_in_python_ssl_and_openssl_pkcs12() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let out = dir.join("out");
    for t in ["ed25519", "p256", "rsa"] {
        let name = format!("dev-{t}");
        let printed = ok(&[
            "keys",
            "--registry",
            dir.join("keys.yaml").to_str().unwrap(),
            "gen",
            "--name",
            &name,
            "--out",
            out.to_str().unwrap(),
            "--type",
            t,
            "--account",
            "alice",
            "--login",
            "alice@example.org",
        ]);
        let (key, crt, p12) = (
            out.join(format!("{name}.key")),
            out.join(format!("{name}.crt")),
            out.join(format!("{name}.p12")),
        );
        // The printed fingerprint is the openssl pipeline's.
        let fp = openssl_fingerprint(dir, &crt);
        assert!(
            printed.contains(&format!("fingerprint: {fp}\n")),
            "{printed}"
        );
        // And the printed command pins exactly this key.
        let cmd = printed.lines().last().unwrap().trim();
        assert!(cmd.starts_with("frontdoor keys --registry "), "{printed}");
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let added = ok(&args);
        assert!(added.contains(&fp), "{added}");

        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&p12).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));

        sh(
            &format!(
                "python3 -c \"import ssl; ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain('{}', '{}')\"",
                crt.display(),
                key.display()
            ),
            dir,
        );
        let pem = sh(
            &format!("openssl pkcs12 -in {} -nodes -passin pass:", p12.display()),
            dir,
        );
        assert!(
            pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"),
            "{pem}"
        );
        assert!(pem.contains(&format!("friendlyName: {name}")), "{pem}");
        // The certificate inside is ours: same fingerprint.
        std::fs::write(dir.join("from-p12.pem"), &pem).unwrap();
        assert_eq!(
            ok(&[
                "keys",
                "fingerprint",
                dir.join("from-p12.pem").to_str().unwrap()
            ])
            .trim(),
            fp
        );
        // The bundle itself can be given to `keys fingerprint` / `keys add`.
        assert_eq!(
            ok(&["keys", "fingerprint", p12.to_str().unwrap()]).trim(),
            fp
        );
        let subject = sh(
            &format!("openssl x509 -in {} -noout -subject", crt.display()),
            dir,
        );
        assert_eq!(subject.trim(), format!("subject=CN = {name}"));
    }
    let list = ok(&[
        "keys",
        "--registry",
        dir.join("keys.yaml").to_str().unwrap(),
        "list",
    ]);
    assert_eq!(list.lines().count(), 4, "{list}");

    // A password and the legacy encryption open too; the same name twice is refused.
    ok(&[
        "keys",
        "gen",
        "--name",
        "pw",
        "--out",
        out.to_str().unwrap(),
        "--p12-password",
        "s3cret",
        "--p12-legacy",
    ]);
    sh(
        &format!(
            "openssl pkcs12 -in {} -nodes -passin pass:s3cret | grep -q 'BEGIN PRIVATE KEY'",
            out.join("pw.p12").display()
        ),
        dir,
    );
    let e = fails(&[
        "keys",
        "gen",
        "--name",
        "pw",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("pw.key already exists"), "{e}");
}

const HAND_WRITTEN: &str = "# Keys of the example.org household.
# Do not reorder: the phones come first.
keys:
  # Alice's phone, added by hand
  - name: zed-phone
    fingerprint: \"FINGERPRINT\"   # from the device
    account: zed
    login: zed@example.org

    imap_preauth: false
  # (end of the phones)
";

#[test]
fn add_list_show_remove_round_trip_keeps_the_file_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let reg = dir.join("keys.yaml");
    let regs = reg.to_str().unwrap();
    let (_, zed_crt) = openssl_key(dir, "zed", "-algorithm ed25519");
    let (_, amy_crt) = openssl_key(dir, "amy", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    let zed_fp = openssl_fingerprint(dir, &zed_crt);
    let amy_fp = openssl_fingerprint(dir, &amy_crt);
    let original = HAND_WRITTEN.replace("FINGERPRINT", &zed_fp);
    std::fs::write(&reg, &original).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = ok(&[
        "keys",
        "--registry",
        regs,
        "add",
        "--name",
        "amy-laptop",
        "--account",
        "amy",
        "--login",
        "amy@example.org",
        amy_crt.to_str().unwrap(),
    ]);
    assert!(out.contains("added \"amy-laptop\" (ECDSA P-256"), "{out}");
    let after = std::fs::read_to_string(&reg).unwrap();
    assert!(
        after.starts_with(&original),
        "the hand-written part changed:\n{after}"
    );
    assert_eq!(
        &after[original.len()..],
        format!("  - name: amy-laptop\n    fingerprint: \"{amy_fp}\"\n    account: amy\n    login: amy@example.org\n    imap_preauth: true\n")
    );
    assert_eq!(
        std::fs::metadata(&reg).unwrap().permissions().mode() & 0o777,
        0o640,
        "mode not kept"
    );

    let list = ok(&["keys", "--registry", regs, "list"]);
    let want = format!(
        "NAME        ACCOUNT  LOGIN            PREAUTH  ADDED BY  ADDED AT  FINGERPRINT\n\
         zed-phone   zed      zed@example.org  no       operator  -         {zed_fp}\n\
         amy-laptop  amy      amy@example.org  yes      operator  -         {amy_fp}\n"
    );
    assert_eq!(list, want);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "list", "--json", "--registry", regs])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"name": "zed-phone", "account": "zed", "login": "zed@example.org", "imap_preauth": false, "fingerprint": zed_fp, "added_by": null, "added_at": null},
            {"name": "amy-laptop", "account": "amy", "login": "amy@example.org", "imap_preauth": true, "fingerprint": amy_fp, "added_by": null, "added_at": null},
        ])
    );
    // show by name and by fingerprint (canonical and hex).
    let show = ok(&["keys", "--registry", regs, "show", "amy-laptop"]);
    assert!(
        show.contains(&format!("fingerprint:  {amy_fp}\n"))
            && show.contains("login:        amy@example.org\n"),
        "{show}"
    );
    let hex: String = STANDARD
        .decode(&zed_fp[7..])
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for key in [zed_fp.as_str(), hex.as_str()] {
        let show = ok(&["keys", "--registry", regs, "show", key]);
        assert!(show.starts_with("name:         zed-phone\n"), "{show}");
    }
    let e = fails(&["keys", "--registry", regs, "show", "nobody"]);
    assert!(e.contains("no key named \"nobody\""), "{e}");

    // Remove what was added: the file is the hand-written one again, to the byte.
    let out = ok(&["keys", "--registry", regs, "remove", "amy-laptop"]);
    assert!(out.starts_with("removed \"amy-laptop\""), "{out}");
    assert_eq!(std::fs::read_to_string(&reg).unwrap(), original);
    // Remove by fingerprint; the comments around it stay.
    ok(&["keys", "--registry", regs, "remove", &zed_fp]);
    assert_eq!(
        std::fs::read_to_string(&reg).unwrap(),
        "# Keys of the example.org household.\n# Do not reorder: the phones come first.\nkeys:\n  # Alice's phone, added by hand\n  # (end of the phones)\n"
    );
    assert_eq!(
        ok(&["keys", "--registry", regs, "list", "--json"]).trim(),
        "[]"
    );
    let e = fails(&["keys", "--registry", regs, "remove", "zed-phone"]);
    assert!(
        e.contains("no key named \"zed-phone\" or with that fingerprint"),
        "{e}"
    );
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn data_dir_and_default_registry_paths() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (_, crt) = openssl_key(dir, "k", "-algorithm ed25519");
    let o = Command::new(BIN)
        .args([
            "keys",
            "add",
            "--name",
            "k",
            "--account",
            "a",
            "--login",
            "a@b",
            crt.to_str().unwrap(),
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let default = dir.join("frontdoor-data/keys.yaml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&default).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = ok(&[
        "keys",
        "--data-dir",
        dir.join("frontdoor-data").to_str().unwrap(),
        "list",
    ]);
    assert!(list.contains("\nk "), "{list}");
}

#[test]
fn mox_base64url_and_hex_fingerprints_are_accepted_in_the_registry() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let reg = dir.join("keys.yaml");
    let regs = reg.to_str().unwrap();
    let (_, a) = openssl_key(dir, "a", "-algorithm ed25519");
    let (_, b) = openssl_key(dir, "b", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384");
    let fa = openssl_fingerprint(dir, &a);
    let fb = openssl_fingerprint(dir, &b);
    let raw_a = STANDARD.decode(&fa[7..]).unwrap();
    let raw_b = STANDARD.decode(&fb[7..]).unwrap();
    let mox = URL_SAFE_NO_PAD.encode(&raw_a);
    let hex: String = raw_b.iter().map(|x| format!("{x:02X}")).collect();
    std::fs::write(
        &reg,
        format!("keys:\n- name: from-mox\n  fingerprint: {mox}\n  account: a\n  login: a@x.org\n- name: hex\n  fingerprint: \"{hex}\"\n  account: b\n  login: b@x.org\n"),
    )
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "--registry", regs, "list", "--json"])).unwrap();
    assert_eq!(json[0]["fingerprint"], fa.as_str());
    assert_eq!(json[1]["fingerprint"], fb.as_str());
    // The same keys cannot be added again under other names.
    let e = fails(&[
        "keys",
        "--registry",
        regs,
        "add",
        "--name",
        "again",
        "--account",
        "a",
        "--login",
        "a@x.org",
        a.to_str().unwrap(),
    ]);
    assert!(
        e.contains(&format!("this key ({fa}) is already registered"))
            && e.contains("as \"from-mox\""),
        "{e}"
    );
    // Items at indentation 0 get a sibling at indentation 0.
    let (_, c) = openssl_key(dir, "c", "-algorithm ed25519");
    ok(&[
        "keys",
        "--registry",
        regs,
        "add",
        "--name",
        "c",
        "--account",
        "c",
        "--login",
        "c@x.org",
        c.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&reg)
        .unwrap()
        .contains("\n- name: c\n  fingerprint: "));
}

#[test]
fn duplicates_and_weak_or_bad_input_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let reg = dir.join("keys.yaml");
    let regs = reg.to_str().unwrap();
    let (_, a) = openssl_key(dir, "a", "-algorithm ed25519");
    let (_, b) = openssl_key(dir, "b", "-algorithm ed25519");
    let (weak, _) = openssl_key(dir, "weak", "-algorithm RSA -pkeyopt rsa_keygen_bits:1024");
    let add = |name: &str, login: &str, f: &Path| {
        frontdoor(&[
            "keys",
            "--registry",
            regs,
            "add",
            "--name",
            name,
            "--account",
            "acct",
            "--login",
            login,
            f.to_str().unwrap(),
        ])
    };
    assert!(add("one", "a@x.org", &a).status.success());
    let before = std::fs::read(&reg).unwrap();

    let o = add("one", "a@x.org", &b);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("a key named \"one\" is already registered"),
        "{o:?}"
    );
    let o = add("two", "a@x.org", &a);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is already registered in"),
        "{o:?}"
    );
    let o = add("weak", "a@x.org", &weak);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "cannot be pinned: RSA-1024 keys are not accepted: frontdoor accepts Ed25519, ECDSA P-256, ECDSA P-384 and RSA of at least 2048 bits"
        ),
        "{o:?}"
    );
    let o = add("two", "not-an-address", &b);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--login \"not-an-address\" is not an address"),
        "{o:?}"
    );
    // Key types rustls cannot verify are refused by name, from either file form.
    for (name, alg, kind) in [
        ("ed448", "-algorithm ed448", "Ed448"),
        (
            "p521",
            "-algorithm EC -pkeyopt ec_paramgen_curve:P-521",
            "ECDSA P-521",
        ),
    ] {
        let (key, crt) = openssl_key(dir, name, alg);
        for f in [key, crt] {
            let o = add(name, "a@x.org", &f);
            assert_eq!(o.status.code(), Some(1));
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(
                e.contains(&format!("{kind} keys are not accepted")),
                "{}: {e}",
                f.display()
            );
        }
    }
    assert_eq!(
        std::fs::read(&reg).unwrap(),
        before,
        "a refused add changed the file"
    );
}

#[test]
fn version_1_certificates_work() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    sh(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out v1.key 2>/dev/null && \
         openssl req -new -key v1.key -subj /CN=someone@else.example -out v1.csr && \
         openssl x509 -req -in v1.csr -signkey v1.key -days 1 -out v1.crt 2>/dev/null",
        dir,
    );
    let text = sh("openssl x509 -in v1.crt -noout -text", dir);
    assert!(text.contains("Version: 1 (0x0)"), "{text}");
    let crt = dir.join("v1.crt");
    assert_eq!(
        ok(&["keys", "fingerprint", crt.to_str().unwrap()]).trim(),
        openssl_fingerprint(dir, &crt)
    );
}

#[test]
fn concurrent_adds_all_land() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let reg = dir.join("keys.yaml");
    const N: usize = 6;
    let certs: Vec<PathBuf> = (0..N)
        .map(|i| openssl_key(dir, &format!("k{i}"), "-algorithm ed25519").1)
        .collect();
    let children: Vec<_> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Command::new(BIN)
                .args([
                    "keys",
                    "--registry",
                    reg.to_str().unwrap(),
                    "add",
                    "--name",
                    &format!("k{i}"),
                    "--account",
                    "a",
                    "--login",
                    "a@x.org",
                    c.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "keys",
        "--registry",
        reg.to_str().unwrap(),
        "list",
        "--json",
    ]))
    .unwrap();
    let mut names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, (0..N).map(|i| format!("k{i}")).collect::<Vec<_>>());
}

#[test]
fn broken_registry_reports_every_problem_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let reg = d.path().join("keys.yaml");
    let regs = reg.to_str().unwrap();
    let good = format!("sha256:{}", STANDARD.encode([7u8; 32]));
    std::fs::write(
        &reg,
        format!(
            "keys:\n  - name: a\n    fingerprint: \"{good}\"\n    account: a\n    login: a@x.org\n  - name: b\n    fingerprint: \"{good}\"\n    account: \"\"\n    login: b\n    colour: red\n"
        ),
    )
    .unwrap();
    let e = fails(&["keys", "--registry", regs, "list"]);
    let want = format!(
        "{regs}:7: keys[1].fingerprint: the same key is already registered as keys[0] (\"a\"); a key may be registered once\n\
         {regs}:8: keys[1].account: must not be empty\n\
         {regs}:9: keys[1].login: login \"b\" is not an address (no @)\n\
         {regs}:10: keys[1].colour: unknown field `colour`, expected one of `name`, `fingerprint`, `account`, `login`, `imap_preauth`, `added_by`, `added_at`\n"
    );
    assert_eq!(e, format!("error: {want}"));
    // Edits refuse to touch a broken file.
    let (_, c) = openssl_key(d.path(), "c", "-algorithm ed25519");
    let e = fails(&[
        "keys",
        "--registry",
        regs,
        "add",
        "--name",
        "c",
        "--account",
        "c",
        "--login",
        "c@x.org",
        c.to_str().unwrap(),
    ]);
    assert!(
        e.contains("has problems; fix them before editing it") && e.contains(":9: keys[1].login"),
        "{e}"
    );

    // World-writable and oversized files are refused with a clear reason.
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(&reg, "keys: []\n").unwrap();
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = fails(&["keys", "--registry", regs, "list"]);
    assert!(e.contains("the file is world-writable (mode 0666)"), "{e}");
    std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&reg, vec![b'#'; 10_000_000]).unwrap();
    let t = std::time::Instant::now();
    let e = fails(&["keys", "--registry", regs, "list"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        e.contains("a registry may have at most 1048576 bytes"),
        "{e}"
    );
}
