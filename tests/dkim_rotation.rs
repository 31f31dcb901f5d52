//! DKIM key rotation without downtime, between two relays (`frontdoor mail
//! serve`, the federation setup): `_a` signs with its first pair (selector
//! `dkim`); the operator makes a second pair (`frontdoor mail dkim rotate
//! --selector s2`), the test's dnsmasq publishes both; while `_a` runs,
//! `frontdoor mail dkim activate s2` switches signing, and the next message
//! arrives at `_b` with `dkim=pass` for `s2`. `list` shows which is
//! active, `retire` refuses the active selector and removes the old one,
//! and `frontdoor mail dns` prints the records of every kept pair.
//!
//! Needs root (port 25), dnsmasq.

mod common;
mod federation_common;
mod mail_common;

use std::process::Command;
use std::time::Duration;

use common::poll::poll_until;
use federation_common::*;

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_running_relay_switches_to_a_new_selector_and_retires_the_old_one() {
    let ca = Ca::new();
    let port = free_port();
    let mut a = Relay::new(A, "127.0.8.2", port, &ca, "{ retry: 1s }");
    let mut b = Relay::new(B, "127.0.8.3", port, &ca, "{ retry: 1s }");
    // The first pair, as the first start makes it, then the second.
    let mut txt = a.txt();
    let out = stdout(&a.dkim_cli(&["rotate", "--selector", "s2"]));
    assert!(out.contains("frontdoor mail dkim activate s2"), "{out}");
    let ring = frontdoor::mail::dkim::keys::Keyring::new(&a.data(), "dkim");
    let signers = ring.signers().unwrap();
    let sels: Vec<&str> = signers.iter().map(|s| s.selector()).collect();
    assert_eq!(sels, ["dkim", "s2"]);
    let s2 = &signers[1];
    assert!(
        out.contains(&format!("s2-ed._domainkey.{A}."))
            && out.contains(&format!("s2._domainkey.{A}.")),
        "{out}"
    );
    assert!(out.contains(&s2.txt_ed25519), "{out}");
    for (sel, value) in s2.records() {
        txt.push((format!("{sel}._domainkey.{A}"), value));
    }
    txt.extend(b.txt());
    let _dns = start_dns(port, &[(A, "127.0.8.2"), (B, "127.0.8.3")], &txt);

    let list = stdout(&a.dkim_cli(&["list"]));
    let line = |sel: &str| -> String {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(sel))
            .unwrap_or_else(|| panic!("no {sel} in {list}"))
            .to_owned()
    };
    assert!(line("dkim").contains(" active "), "{list}");
    assert!(line("s2").contains(" kept "), "{list}");
    // `mail dns` prints both pairs while both are kept.
    let zone = Command::new(mail_common::BIN)
        .args(["mail", "dns", "--config"])
        .arg(a.config())
        .output()
        .unwrap();
    let zone = stdout(&zone);
    for name in ["dkim-ed", "dkim", "s2-ed", "s2"] {
        assert!(
            zone.contains(&format!("{name}._domainkey.{A}. ")),
            "{name}: {zone}"
        );
    }

    a.start();
    b.start();
    let (from, to) = (format!("alice@{A}"), format!("bob@{B}"));
    let delivered = |n: usize| {
        poll_until(Duration::from_secs(30), || {
            a.events("queue: delivered").len() == n
        })
    };
    assert_eq!(a.submit(&from, &to, "first@test"), Some(250));
    assert!(delivered(1), "{}\n{}", a.log(), b.log());
    // Switch while running, no restart.
    let out = stdout(&a.dkim_cli(&["activate", "s2"]));
    assert!(out.contains("active DKIM selector: s2 (was dkim)"), "{out}");
    assert_eq!(a.submit(&from, &to, "second@test"), Some(250));
    assert!(delivered(2), "{}\n{}", a.log(), b.log());
    assert_eq!(
        a.events("DKIM: active selector switched").len(),
        1,
        "{}",
        a.log()
    );
    // The active pair cannot be retired; the old one can.
    let refused = a.dkim_cli(&["retire", "s2"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("selector s2 is the active one: activate another before retiring it"),
        "{err}"
    );
    let out = stdout(&a.dkim_cli(&["retire", "dkim"]));
    assert!(out.contains("retired DKIM selector dkim"), "{out}");
    let list = stdout(&a.dkim_cli(&["list"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(
        list.starts_with("s2 ") && list.contains(" active "),
        "{list}"
    );
    assert_eq!(a.submit(&from, &to, "third@test"), Some(250));
    assert!(delivered(3), "{}\n{}", a.log(), b.log());
    assert!(poll_until(Duration::from_secs(10), || {
        b.events("DKIM: dkim=pass").len() == 3
    }));

    let msgs = b.stop_and_read(&to);
    let by_id = |id: &str| -> &String {
        msgs.iter()
            .find(|m| m.contains(&format!("Message-ID: <{id}>")))
            .unwrap_or_else(|| panic!("{id} not in {msgs:?}"))
    };
    for (id, sel) in [
        ("first@test", "dkim"),
        ("second@test", "s2"),
        ("third@test", "s2"),
    ] {
        let m = by_id(id);
        assert!(
            m.contains(&format!("dkim=pass header.d={A} header.s={sel}-ed")),
            "{id}: {m}"
        );
        assert!(
            m.contains(&format!("dkim=pass header.d={A} header.s={sel} ")),
            "{id}: {m}"
        );
    }
}
