//! Parser, validator and text-edit tests with exact expected messages.

use std::path::Path;

use super::edit::{appended, entry_text, removed, with_preauth, yaml_scalar};
use super::*;

fn fp(b: u8) -> Fingerprint {
    Fingerprint([b; 32])
}

fn parse(text: &str) -> Result<Registry, Problems> {
    Registry::parse(Path::new("keys.yaml"), text)
}

fn messages(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(|p| p.to_string())
        .collect()
}

const GOOD: &str = r#"# Pinned TLS client keys.
keys:
  - name: alice-phone
    fingerprint: "sha256:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    account: alice
    login: alice@example.org
    imap_preauth: true        # default
  # bob's laptop, moved over from mox (base64url form)
  - name: bob-laptop
    fingerprint: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI
    account: bob
    login: bob@example.org
    imap_preauth: false
  - name: carol
    fingerprint: "0303030303030303030303030303030303030303030303030303030303030303"
    account: carol
    login: carol@example.org
"#;

#[test]
fn design_format_is_accepted() {
    let r = parse(GOOD).unwrap();
    assert_eq!(r.len(), 3);
    let a = r.lookup(&fp(1)).unwrap();
    assert_eq!(
        *a,
        KeyEntry {
            name: "alice-phone".into(),
            fingerprint: fp(1),
            account: "alice".into(),
            login: "alice@example.org".into(),
            imap_preauth: true,
            added_by: None,
            added_at: None,
        }
    );
    assert!(!r.lookup(&fp(2)).unwrap().imap_preauth);
    assert_eq!(r.lookup(&fp(3)).unwrap().name, "carol");
    assert!(
        r.lookup(&fp(3)).unwrap().imap_preauth,
        "imap_preauth defaults to true"
    );
    assert!(r.lookup(&fp(4)).is_none());
    let names: Vec<&str> = r.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["alice-phone", "bob-laptop", "carol"]);
    assert_eq!(r.find("bob-laptop").unwrap().account, "bob");
    assert_eq!(r.find(&fp(3).to_string()).unwrap().name, "carol");
    assert_eq!(r.find(&fp(3).to_hex()).unwrap().name, "carol");
    assert!(r.find("nobody").is_none());
}

#[test]
fn empty_forms_are_an_empty_registry() {
    for t in [
        "",
        "# nothing yet\n",
        "keys:\n",
        "keys: []\n",
        "keys: ~\n",
        "---\n",
    ] {
        assert_eq!(parse(t).unwrap().len(), 0, "{t:?}");
    }
}

#[test]
fn every_problem_is_reported_with_file_and_line() {
    let bad = r#"keys:
  - name: alice-phone
    fingerprint: "sha256:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    account: alice
    login: alice@example.org
  - name: alice-phone
    fingerprint: "sha256:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
    account: alice
    login: alice@example.org
  - name: copy
    fingerprint: "0101010101010101010101010101010101010101010101010101010101010101"
    account: alice
    login: alice@example.org
  - name: short
    fingerprint: "sha256:AAAA"
    account: ""
    login: nobody
    imap_preauth: maybe
    colour: blue
  - name: 42
    fingerprint: "not base64!"
    login: x@y
  - just a string
"#;
    let got = messages(bad);
    let want = [
        "keys.yaml:6: keys[1].name: name \"alice-phone\" is already used by keys[0]",
        "keys.yaml:11: keys[2].fingerprint: the same key is already registered as keys[0] (\"alice-phone\"); a key may be registered once",
        &format!("keys.yaml:15: keys[3].fingerprint: bad fingerprint \"sha256:AAAA\": decodes to 3 bytes, a SHA-256 fingerprint is 32; {}", fingerprint::ACCEPTED_FORMS),
        "keys.yaml:16: keys[3].account: must not be empty",
        "keys.yaml:17: keys[3].login: login \"nobody\" is not an address (no @)",
        "keys.yaml:18: keys[3].imap_preauth: must be true or false",
        "keys.yaml:19: keys[3].colour: unknown field `colour`, expected one of `name`, `fingerprint`, `account`, `login`, `imap_preauth`, `added_by`, `added_at`",
        "keys.yaml:20: keys[4].name: must be a string",
        "keys.yaml:20: keys[4]: missing field `account`",
        &format!("keys.yaml:21: keys[4].fingerprint: bad fingerprint \"not base64!\": {}", fingerprint::ACCEPTED_FORMS),
        "keys.yaml:23: keys[5]: expected a mapping with name, fingerprint, account, login and optionally imap_preauth",
    ];
    assert_eq!(got, want);
}

#[test]
fn top_level_problems() {
    assert_eq!(
        messages("keys: []\nkey:\n  - name: x\n"),
        ["keys.yaml:2: key: unknown field `key`, expected `keys`"]
    );
    assert_eq!(
        messages("keys: alice\n"),
        ["keys.yaml:1: keys: expected a list of keys (`- name: …` items)"]
    );
    assert_eq!(
        messages("- a\n- b\n"),
        ["keys.yaml:1: expected a mapping with a `keys:` list"]
    );
    // A YAML syntax error names its line too.
    let m = messages("keys:\n  - name: \"unterminated\n    account: a\n");
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("keys.yaml:"), "{m:?}");
    assert_eq!(
        messages("keys:\n  - name: a\n    name: b\n"),
        ["keys.yaml:2: keys[0]: duplicate entry with key \"name\""]
    );
}

#[test]
fn empty_name_and_login_and_control_characters() {
    let t = format!(
        "keys:\n  - name: \"  \"\n    fingerprint: \"{}\"\n    account: a\n    login: \"\"\n  - name: \"tab\\there\"\n    fingerprint: \"{}\"\n    account: a\n    login: a@b\n",
        fp(1),
        fp(2)
    );
    assert_eq!(
        messages(&t),
        [
            "keys.yaml:2: keys[0].name: must not be empty",
            "keys.yaml:5: keys[0].login: must not be empty",
            "keys.yaml:6: keys[1].name: must not contain control characters",
        ]
    );
}

#[test]
fn fields_too_long_for_a_proxy_header_are_refused() {
    let long = format!("{}@example.org", "a".repeat(400));
    let t = format!(
        "keys:\n  - name: k\n    fingerprint: \"{}\"\n    account: a\n    login: \"{long}\"\n",
        fp(1)
    );
    assert_eq!(
        messages(&t),
        ["keys.yaml:5: keys[0].login: longer than 320 bytes"]
    );
    // The longest accepted fields still make a header backends decode.
    let edge = "b".repeat(super::MAX_FIELD_LEN);
    let info = crate::proxy_protocol::ConnInfo {
        src: "[2001:db8::1]:1".parse().unwrap(),
        dst: "[2001:db8::2]:2".parse().unwrap(),
        alpn: Some(b"imap".to_vec()),
        authority: Some("c".repeat(253)),
        unique_id: Some(vec![b'i'; 128]),
        ssl: Some(crate::proxy_protocol::SslInfo {
            client_cert: true,
            verified: true,
            version: "TLSv1.3".into(),
            cipher: "TLS13_CHACHA20_POLY1305_SHA256".into(),
            sig_alg: Some("ECDSA-SHA256".into()),
            key_alg: Some("EC256".into()),
            cn: Some(edge.clone()),
            resumed: false,
        }),
        identity: Some(crate::proxy_protocol::IdentityTlvs {
            account: edge.clone(),
            login: edge.clone(),
            key_name: edge.clone(),
            fingerprint: [1; 32],
            no_imap_preauth: true,
        }),
    };
    let h = crate::proxy_protocol::encode_v2(&info, Some(b"0123456789abcdef"));
    assert!(h.len() <= crate::proxy_protocol::MAX_V2_LEN, "{}", h.len());
    assert!(matches!(
        crate::proxy_protocol::decode(&h),
        Ok(crate::proxy_protocol::Decoded::Complete { .. })
    ));
}

#[test]
fn load_refuses_world_writable_and_huge_files() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keys.yaml");
    std::fs::write(&p, GOOD).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = Registry::load(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{0}: the file is world-writable (mode 0666): anyone on this machine could pin a key; run `chmod o-w {0}`",
            p.display()
        )
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(Registry::load(&p).unwrap().len(), 3);

    // 10 MB of junk: refused from its size, quickly.
    let mut f = std::fs::File::create(&p).unwrap();
    let junk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        f.write_all(&junk).unwrap();
    }
    drop(f);
    let t = std::time::Instant::now();
    let e = Registry::load(&p).unwrap_err().to_string();
    assert!(
        t.elapsed() < std::time::Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        e,
        format!("{}: the file is 10485760 bytes or more; a registry may have at most 1048576 bytes (1 MiB): is this the right file?", p.display())
    );

    let e = Registry::load(dir.path()).unwrap_err().to_string();
    assert!(e.ends_with(": not a regular file"), "{e}");
    let e = Registry::load(&dir.path().join("none.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.yaml: cannot read: No such file"), "{e}");
    std::fs::write(&p, b"keys:\n  - name: \xff\n").unwrap();
    let e = Registry::load(&p).unwrap_err().to_string();
    assert_eq!(e, format!("{}:2: not UTF-8 text", p.display()));
}

fn entry(name: &str, b: u8) -> KeyEntry {
    KeyEntry {
        name: name.into(),
        fingerprint: fp(b),
        account: "dave".into(),
        login: "dave@example.org".into(),
        imap_preauth: false,
        added_by: None,
        added_at: None,
    }
}

#[test]
fn append_keeps_every_byte_and_matches_indentation() {
    let old = parse(GOOD).unwrap();
    let new = appended(Some(GOOD), &old, &entry("dave", 9)).unwrap();
    assert!(new.starts_with(GOOD));
    assert_eq!(&new[GOOD.len()..], entry_text(&entry("dave", 9), 2));
    assert_eq!(parse(&new).unwrap().len(), 4);

    let zero = "keys:\n- name: a\n  fingerprint: \"0101010101010101010101010101010101010101010101010101010101010101\"\n  account: a\n  login: a@b  # no newline at the end";
    let r = parse(zero).unwrap();
    let new = appended(Some(zero), &r, &entry("dave", 9)).unwrap();
    assert_eq!(new, format!("{zero}\n{}", entry_text(&entry("dave", 9), 0)));
    assert_eq!(parse(&new).unwrap().len(), 2);
}

#[test]
fn append_to_empty_forms() {
    let e = entry("dave", 9);
    let item = entry_text(&e, 2);
    let empty = Registry::default();
    let cases = [
        ("keys: []\n", format!("keys:\n{item}")),
        (
            "keys: [ ]   # none yet\n",
            format!("keys: # none yet\n{item}"),
        ),
        ("# header\nkeys:\n", format!("# header\nkeys:\n{item}")),
        (
            "keys: ~\n# trailing\n",
            format!("keys:\n# trailing\n{item}"),
        ),
        (
            "# only a comment",
            format!("# only a comment\nkeys:\n{item}"),
        ),
        ("", format!("keys:\n{item}")),
    ];
    for (old, want) in cases {
        let got = appended(Some(old), &empty, &e).unwrap();
        assert_eq!(got, want, "{old:?}");
        assert_eq!(parse(&got).unwrap().len(), 1, "{got}");
    }
    let new = appended(None, &empty, &e).unwrap();
    assert!(new.starts_with("# Pinned TLS client keys"), "{new}");
    assert_eq!(parse(&new).unwrap().lookup(&fp(9)), Some(&e));
}

#[test]
fn append_refuses_flow_lists() {
    let t = format!(
        "keys: [{{name: a, fingerprint: \"{}\", account: a, login: a@b}}]\n",
        fp(1)
    );
    let r = parse(&t).unwrap();
    let e = appended(Some(&t), &r, &entry("dave", 9)).unwrap_err();
    assert_eq!(e, super::edit::Layout::FlowList);
    assert_eq!(
        e.to_string(),
        "keys: is written as a flow list [ … ], not as a block list of `- name:` items"
    );
}

#[test]
fn remove_cuts_only_the_entry_lines() {
    let r = parse(GOOD).unwrap();
    // The middle one: the comment above it stays, as does everything else.
    let got = removed(GOOD, 1, r.len()).unwrap();
    let want = GOOD.replace(
        "  - name: bob-laptop\n    fingerprint: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI\n    account: bob\n    login: bob@example.org\n    imap_preauth: false\n",
        "",
    );
    assert_eq!(got, want);
    // The first and the last.
    let got = removed(GOOD, 0, r.len()).unwrap();
    assert!(
        got.starts_with("# Pinned TLS client keys.\nkeys:\n  # bob's laptop"),
        "{got}"
    );
    let got = removed(GOOD, 2, r.len()).unwrap();
    assert!(got.ends_with("    imap_preauth: false\n"), "{got}");
    assert_eq!(parse(&got).unwrap().len(), 2);
    // The only one: `keys:` with no items is an empty registry.
    let one = "keys:\n  - name: a\n    fingerprint: \"0101010101010101010101010101010101010101010101010101010101010101\"\n    account: a\n    login: a@b\n# end\n";
    let got = removed(one, 0, 1).unwrap();
    assert_eq!(got, "keys:\n# end\n");
    assert_eq!(parse(&got).unwrap().len(), 0);
}

#[test]
fn preauth_switch_changes_one_line_and_keeps_its_comment() {
    let r = parse(GOOD).unwrap();
    // The line is there, with a comment: only its value changes.
    let got = with_preauth(GOOD, 0, r.len(), false).unwrap();
    assert_eq!(
        got,
        GOOD.replace(
            "    imap_preauth: true        # default\n",
            "    imap_preauth: false # default\n"
        )
    );
    assert!(
        !parse(&got)
            .unwrap()
            .by_name("alice-phone")
            .unwrap()
            .imap_preauth
    );
    // Already so: the same text.
    assert_eq!(with_preauth(GOOD, 1, r.len(), false).unwrap(), GOOD);
    // No line (carol): one is added after her last field, at her indent.
    let got = with_preauth(GOOD, 2, r.len(), false).unwrap();
    assert!(
        got.ends_with("    login: carol@example.org\n    imap_preauth: false\n"),
        "{got}"
    );
    let after = parse(&got).unwrap();
    assert!(!after.by_name("carol").unwrap().imap_preauth);
    assert!(after.by_name("alice-phone").unwrap().imap_preauth);
}

#[test]
fn added_by_and_at_round_trip_and_are_checked() {
    let e = KeyEntry {
        added_by: Some("self".into()),
        added_at: Some("2026-12-02T03:44:58Z".into()),
        ..entry("dave", 9)
    };
    let t = format!("keys:\n{}", entry_text(&e, 2));
    assert!(
        t.contains("    added_by: self\n    added_at: \"2026-12-02T03:44:58Z\"\n"),
        "{t}"
    );
    assert_eq!(parse(&t).unwrap().by_name("dave"), Some(&e));
    let bad = t.replace("added_by: self", "added_by: 3");
    assert_eq!(
        messages(&bad),
        ["keys.yaml:7: keys[0].added_by: must be a string"]
    );
}

#[test]
fn scalars_round_trip() {
    for s in [
        "alice",
        "alice@example.org",
        "true",
        "yes",
        "123",
        "0x1f",
        "a b",
        "a: b",
        "#x",
        "\"q\"",
        "back\\slash",
        "null",
        "~",
        "-x",
        "é",
    ] {
        let y = yaml_scalar(s);
        let v: serde_yaml::Value = serde_yaml::from_str(&format!("k: {y}\n")).unwrap();
        assert_eq!(v["k"], serde_yaml::Value::String(s.into()), "{s:?} -> {y}");
    }
    assert_eq!(yaml_scalar("alice@example.org"), "alice@example.org");
    assert_eq!(yaml_scalar("true"), "\"true\"");
}

#[test]
fn from_entries_refuses_duplicates() {
    assert!(Registry::from_entries(vec![entry("a", 1), entry("b", 2)]).is_ok());
    assert!(Registry::from_entries(vec![entry("a", 1), entry("a", 2)]).is_err());
    assert!(Registry::from_entries(vec![entry("a", 1), entry("b", 1)]).is_err());
}

#[test]
fn mangled_input_never_panics() {
    // Every byte of a good file replaced by characters that matter to YAML,
    // and every prefix: parse must return, valid or with problems.
    let bytes = GOOD.as_bytes();
    for i in 0..bytes.len() {
        for c in [b':', b'-', b'"', b' ', b'\n', b'[', b'#', b'x'] {
            let mut m = bytes.to_vec();
            m[i] = c;
            let _ = Registry::parse_bytes(Path::new("m.yaml"), &m);
        }
        let _ = Registry::parse_bytes(Path::new("m.yaml"), &bytes[..i]);
        if let Ok(r) = parse(std::str::from_utf8(&bytes[..i]).unwrap_or("")) {
            let _ = appended(Some(&GOOD[..i]), &r, &entry("x", 200));
            for j in 0..r.len() {
                let _ = removed(&GOOD[..i], j, r.len());
            }
        }
    }
    let fp = fp(1).to_string();
    for i in 0..fp.len() {
        let _ = fp[..i].parse::<Fingerprint>();
    }
}

#[test]
fn truncated_certificates_and_keys_never_panic() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    for blob in [
        cert.der().to_vec(),
        kp.serialized_der().to_vec(),
        kp.public_key_der(),
        cert.pem().into_bytes(),
    ] {
        for i in 0..blob.len() {
            let _ = keys::public_key_from_bytes(&blob[..i]);
            let _ = KeyKind::of_spki(&blob[..i]);
        }
    }
}

#[test]
fn identify_spki_checks_kind_then_looks_up() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = kp.public_key_der();
    let fp = fingerprint_spki(&spki);
    let mut e = entry("dev", 0);
    e.fingerprint = fp;
    let r = Registry::from_entries(vec![e.clone(), entry("other", 5)]).unwrap();
    assert_eq!(r.identify_spki(&spki).unwrap(), (fp, Some(&e)));
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .public_key_der();
    assert_eq!(
        r.identify_spki(&other).unwrap(),
        (fingerprint_spki(&other), None)
    );
    assert!(r.identify_spki(b"junk").is_err());
}
