//! `frontdoor mail dns [--check]` against a real DNS server: the printed
//! records are zone-file lines (parsed here as chatmail's `cmdeploy dns`
//! parses its zone) holding the relay's own DKIM keys; with `--check`,
//! dnsmasq (on 127.0.19.53:53, this test's own address) publishes some
//! records right, some wrong and leaves some out, and each gets its
//! verdict and the exit code says whether the zone is usable; once every
//! record is right the check passes.

mod common;

use std::path::Path;
use std::process::Command;

use common::dns::{self, Record};
use frontdoor::mail::dkim::Signer;

const DNS_ADDR: &str = "127.0.19.53:53";
const HOST_IP: &str = "127.0.19.10";
const D: &str = "relay.test";

fn mail_dns(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::BIN)
        .args(["mail", "dns", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty() || out.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

/// `(name, type, rdata)` of each record line, as chatmail's
/// `parse_zone_records` reads BIND format (comments and blanks skipped).
fn parse_zone(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 5 && f[2] == "IN", "not a zone line: {l:?}");
            assert_eq!(f[1], "3600", "{l}");
            let rdata = f[4..].join(" ");
            (f[0].to_string(), f[3].to_string(), rdata)
        })
        .collect()
}

/// The TXT value of zone-form data (quoted strings joined).
fn unquote(rdata: &str) -> String {
    rdata
        .split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat()
}

/// The status word of the `--check` line for `name` `rtype`.
fn status<'a>(out: &'a str, name: &str, rtype: &str) -> &'a str {
    out.lines()
        .find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4 && f[1] == name && f[4] == rtype
        })
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no line for {name} {rtype}:\n{out}"))
}

#[test]
fn prints_the_zone_and_checks_it_against_dns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("frontdoor.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mail:\n  domains: [{D}]\n  data_dir: data\n  chatmail: {{}}\n  dns: {{ resolvers: [\"{DNS_ADDR}\"] }}\n"
        ),
    )
    .unwrap();
    // Before the first start there are no keys: said, and the check fails.
    let (code, out) = mail_dns(&cfg, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("DKIM keys are made at the first start"),
        "{out}"
    );
    assert!(
        !dir.path().join("data/dkim").exists(),
        "mail dns made no keys"
    );

    // The keys the server makes at its first start.
    let signer = Signer::load_or_generate(&dir.path().join("data"), "dkim").unwrap();
    let (code, out) = mail_dns(&cfg, &["--ip", HOST_IP]);
    assert_eq!(code, 0, "{out}");
    let zone = parse_zone(&out);
    let find = |name: &str, t: &str| -> String {
        zone.iter()
            .find(|(n, ty, _)| n == name && ty == t)
            .map(|(_, _, r)| r.clone())
            .unwrap_or_else(|| panic!("no {name} {t} in:\n{out}"))
    };
    let fq = format!("{D}.");
    assert_eq!(find(&fq, "A"), HOST_IP);
    assert_eq!(find(&fq, "MX"), format!("10 {fq}"));
    assert_eq!(
        unquote(&find(&format!("dkim._domainkey.{fq}"), "TXT")),
        signer.txt_rsa
    );
    assert_eq!(
        unquote(&find(&format!("dkim-ed._domainkey.{fq}"), "TXT")),
        signer.txt_ed25519
    );
    let sts = unquote(&find(&format!("_mta-sts.{fq}"), "TXT"));
    assert!(sts.starts_with("v=STSv1; id="), "{sts}");
    assert_eq!(find(&format!("mta-sts.{fq}"), "CNAME"), fq);
    assert_eq!(find(&format!("autoconfig.{fq}"), "CNAME"), fq);
    assert_eq!(
        find(&format!("_imaps._tcp.{fq}"), "SRV"),
        format!("0 1 993 {fq}")
    );
    assert_eq!(
        find(&format!("_submissions._tcp.{fq}"), "SRV"),
        format!("0 1 465 {fq}")
    );
    assert_eq!(unquote(&find(&fq, "TXT")), "v=spf1 a mx ~all");
    assert_eq!(
        unquote(&find(&format!("_dmarc.{fq}"), "TXT")),
        "v=DMARC1;p=reject;adkim=s;aspf=s"
    );
    assert_eq!(zone.len(), 12, "{out}");

    // Some right, some wrong, some missing.
    let other = Signer::load_or_generate(&dir.path().join("other"), "dkim").unwrap();
    let base = vec![
        Record::addr(D, HOST_IP),
        Record::mx(D, D, 10),
        Record::txt(&format!("dkim-ed._domainkey.{D}"), &signer.txt_ed25519),
        Record::txt(&format!("_mta-sts.{D}"), &sts),
        Record::cname(&format!("mta-sts.{D}"), D),
        Record::srv(&format!("_imaps._tcp.{D}"), D, 993),
    ];
    let mut partial = base.clone();
    partial.extend([
        // An old key left in DNS.
        Record::txt(&format!("dkim._domainkey.{D}"), &other.txt_rsa),
        Record::txt(D, "v=spf1 -all"),
        Record::srv(&format!("_submissions._tcp.{D}"), D, 587),
    ]);
    let dns_server = dns::start(DNS_ADDR.parse().unwrap(), &partial);
    let (code, out) = mail_dns(&cfg, &["--check", "--ip", HOST_IP]);
    assert_eq!(code, 1, "{out}");
    let fq_ = fq.as_str();
    for (name, t, want) in [
        (fq_.to_string(), "A", "ok"),
        (fq_.to_string(), "MX", "ok"),
        (format!("dkim-ed._domainkey.{fq}"), "TXT", "ok"),
        (format!("dkim._domainkey.{fq}"), "TXT", "WRONG"),
        (format!("_mta-sts.{fq}"), "TXT", "ok"),
        (format!("mta-sts.{fq}"), "CNAME", "ok"),
        (fq_.to_string(), "TXT", "WRONG"),
        (format!("_dmarc.{fq}"), "TXT", "missing"),
        (format!("_imaps._tcp.{fq}"), "SRV", "ok"),
        (format!("_submissions._tcp.{fq}"), "SRV", "WRONG"),
        (format!("autoconfig.{fq}"), "CNAME", "missing"),
        (format!("_smtp._tls.{fq}"), "TXT", "optional"),
    ] {
        assert_eq!(status(&out, &name, t), want, "{name} {t}:\n{out}");
    }
    assert!(out.contains("found: v=spf1 -all"), "{out}");
    assert!(out.contains("found: 587 relay.test."), "{out}");
    assert!(out.contains("found: another key: "), "{out}");
    assert!(
        out.trim_end()
            .ends_with("6 ok, 3 missing, 3 wrong, 0 lookups failed"),
        "{out}"
    );
    drop(dns_server);

    // Every required and recommended record right: the check passes (a
    // missing optional record is only noted).
    let mut full = base;
    full.extend([
        Record::txt(&format!("dkim._domainkey.{D}"), &signer.txt_rsa),
        Record::txt(D, "v=spf1 a mx ~all"),
        Record::txt(
            &format!("_dmarc.{D}"),
            "v=DMARC1; p=reject; adkim=s; aspf=s",
        ),
        Record::srv(&format!("_submissions._tcp.{D}"), D, 465),
        Record::cname(&format!("autoconfig.{D}"), D),
    ]);
    let _dns = dns::start(DNS_ADDR.parse().unwrap(), &full);
    let (code, out) = mail_dns(&cfg, &["--check", "--ip", HOST_IP]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.trim_end()
            .ends_with("11 ok, 1 missing, 0 wrong, 0 lookups failed"),
        "{out}"
    );
    assert_eq!(status(&out, &format!("_smtp._tls.{fq}"), "TXT"), "optional");
}
