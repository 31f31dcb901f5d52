//! The DNS records a relay needs (`frontdoor mail dns`): which ones, made
//! from the `mail:` config and the DKIM keys ([`expected`]), written as
//! zone-file lines ([`zone_line`], as chatmail's `cmdeploy dns` prints
//! them), and the judgement of each against what the resolvers answer
//! ([`judge`], pure; [`lookup`] asks hickory-resolver).
//!
//! The relay's domain is `mail.domains[0]`: it is the MX of every local
//! domain, the host of autoconfig and of the MTA-STS policy (whose `mx:`
//! names it, `src/web/autoconfig.rs`), and the target of the SRV records.
//! Each local domain gets MX, SPF, DKIM (both keys), DMARC, MTA-STS,
//! TLSRPT, SRV and autoconfig records.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// TTL of the printed records.
pub const TTL: u32 = 3600;

/// How much a record matters: a missing required record fails `--check`,
/// a missing recommended one is a warning, an optional one a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Recommended,
    Optional,
}

/// What a published record must be for the check to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A/AAAA: these addresses (all of them); empty: any address.
    Addr(Vec<IpAddr>),
    /// An MX record naming this host.
    Mx(String),
    /// The one TXT record starting with `prefix` equals `value` (spaces
    /// around `;` ignored).
    TxtExact { prefix: String, value: String },
    /// A DKIM key record whose `p=` is this key (RFC 6376 §3.6.1).
    DkimKey(String),
    /// The one TXT record starting with `prefix` has these tags.
    TxtTags {
        prefix: String,
        tags: Vec<(String, Option<String>)>,
    },
    /// CNAME to this name, or the same addresses as it.
    Alias(String),
    /// SRV with this port and target.
    Srv(u16, String),
}

/// One record to publish.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Owner name, fully qualified with its final dot.
    pub name: String,
    /// `A`, `AAAA`, `MX`, `TXT`, `CNAME`, `SRV`.
    pub rtype: &'static str,
    /// The record data in zone-file form; `None` when only the operator
    /// knows it (A/AAAA without `--ip`).
    pub rdata: Option<String>,
    pub need: Need,
    pub rule: Rule,
}

/// One answer record, reduced to what the rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addr(IpAddr),
    Mx(String),
    Txt(String),
    Cname(String),
    Srv(u16, String),
}

/// The verdict on one expected record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Missing,
    /// Published, but not as it should be: what was found.
    Wrong(String),
}

/// What the DNS records are made from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub domains: &'a [String],
    /// The host's public addresses (`--ip`); empty when not given.
    pub addrs: &'a [IpAddr],
    /// `(selector, TXT value)` per DKIM key; empty when there are none yet.
    pub dkim: &'a [(String, String)],
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A TXT record's data in zone form: quoted strings of at most 255 bytes
/// (RFC 1035 §3.3.14), `"` and `\` escaped.
pub fn txt_rdata(value: &str) -> String {
    let esc = value.replace('\\', "\\\\").replace('"', "\\\"");
    let mut parts = Vec::new();
    let mut rest = esc.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) || rest[..cut].ends_with('\\') {
            cut -= 1;
        }
        parts.push(format!("\"{}\"", &rest[..cut]));
        rest = &rest[cut..];
    }
    if parts.is_empty() {
        parts.push("\"\"".into());
    }
    parts.join(" ")
}

/// The `id=` of the `_mta-sts` record: from the policy's text, so that it
/// changes exactly when the policy does (RFC 8461 §3.1).
pub fn mta_sts_id(domain: &str) -> String {
    let policy = mta_sts_policy(domain);
    let h = Sha256::digest(policy.as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Every record the relay needs, in printing order.
pub fn expected(i: &Inputs<'_>) -> Vec<Expected> {
    let Some(relay) = i.domains.first() else {
        return Vec::new();
    };
    let host = fqdn(relay);
    let mut out = Vec::new();
    let v4: Vec<IpAddr> = i.addrs.iter().copied().filter(IpAddr::is_ipv4).collect();
    let v6: Vec<IpAddr> = i.addrs.iter().copied().filter(IpAddr::is_ipv6).collect();
    if i.addrs.is_empty() {
        out.push(Expected {
            name: host.clone(),
            rtype: "A",
            rdata: None,
            need: Need::Required,
            rule: Rule::Addr(Vec::new()),
        });
    }
    for (rtype, addrs) in [("A", &v4), ("AAAA", &v6)] {
        for a in addrs.iter() {
            out.push(Expected {
                name: host.clone(),
                rtype,
                rdata: Some(a.to_string()),
                need: Need::Required,
                rule: Rule::Addr(addrs.clone()),
            });
        }
    }
    for d in i.domains {
        let name = fqdn(d);
        let txt = |owner: String, value: String, need: Need, rule: Rule| Expected {
            name: owner,
            rtype: "TXT",
            rdata: Some(txt_rdata(&value)),
            need,
            rule,
        };
        out.push(Expected {
            name: name.clone(),
            rtype: "MX",
            rdata: Some(format!("10 {host}")),
            need: Need::Required,
            rule: Rule::Mx(host.clone()),
        });
        for (sel, value) in i.dkim {
            let p = dkim_tag(value, "p").unwrap_or_default();
            out.push(txt(
                format!("{sel}._domainkey.{name}"),
                value.clone(),
                Need::Required,
                Rule::DkimKey(p),
            ));
        }
        out.push(txt(
            format!("_mta-sts.{name}"),
            format!("v=STSv1; id={}", mta_sts_id(relay)),
            Need::Required,
            Rule::TxtTags {
                prefix: "v=STSv1".into(),
                tags: vec![("id".into(), None)],
            },
        ));
        out.push(Expected {
            name: format!("mta-sts.{name}"),
            rtype: "CNAME",
            rdata: Some(host.clone()),
            need: Need::Required,
            rule: Rule::Alias(host.clone()),
        });
        let spf = "v=spf1 a mx ~all".to_string();
        out.push(txt(
            name.clone(),
            spf.clone(),
            Need::Recommended,
            Rule::TxtExact {
                prefix: "v=spf1".into(),
                value: spf,
            },
        ));
        out.push(txt(
            format!("_dmarc.{name}"),
            "v=DMARC1;p=reject;adkim=s;aspf=s".into(),
            Need::Recommended,
            Rule::TxtTags {
                prefix: "v=DMARC1".into(),
                tags: [("p", "reject"), ("adkim", "s"), ("aspf", "s")]
                    .iter()
                    .map(|(k, v)| ((*k).into(), Some((*v).into())))
                    .collect(),
            },
        ));
        for (svc, port) in [("_imaps._tcp", 993), ("_submissions._tcp", 465)] {
            out.push(Expected {
                name: format!("{svc}.{name}"),
                rtype: "SRV",
                rdata: Some(format!("0 1 {port} {host}")),
                need: Need::Recommended,
                rule: Rule::Srv(port, host.clone()),
            });
        }
        out.push(Expected {
            name: format!("autoconfig.{name}"),
            rtype: "CNAME",
            rdata: Some(host.clone()),
            need: Need::Recommended,
            rule: Rule::Alias(host.clone()),
        });
        out.push(txt(
            format!("_smtp._tls.{name}"),
            format!("v=TLSRPTv1; rua=mailto:postmaster@{d}"),
            Need::Optional,
            Rule::TxtTags {
                prefix: "v=TLSRPTv1".into(),
                tags: vec![("rua".into(), None)],
            },
        ));
    }
    out
}

/// A zone-file line (`name ttl IN type data`), or a comment for a record
/// whose data only the operator knows.
pub fn zone_line(e: &Expected) -> String {
    match &e.rdata {
        Some(d) => format!("{:<40} {:<6} IN  {:<5}  {d}", e.name, TTL, e.rtype),
        None => format!(
            "; {} A and AAAA: this host's addresses (give --ip ADDR to print them)",
            e.name
        ),
    }
}

/// The value of tag `tag` in a `k=v; k=v` record (DKIM, DMARC, MTA-STS).
fn dkim_tag(record: &str, tag: &str) -> Option<String> {
    record.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(tag)).then(|| v.split_whitespace().collect::<String>())
    })
}

fn norm_txt(s: &str) -> String {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(";")
        .to_ascii_lowercase()
}

fn norm_name(s: &str) -> String {
    fqdn(&s.to_ascii_lowercase())
}

/// Judge `answers` (to the lookup of the record's own type; for
/// [`Rule::Alias`] its CNAME or addresses) against `e`. `target_addrs`: the
/// addresses of the alias target, for [`Rule::Alias`].
pub fn judge(e: &Expected, answers: &[Answer], target_addrs: &[IpAddr]) -> Verdict {
    let txts: Vec<&str> = answers
        .iter()
        .filter_map(|a| match a {
            Answer::Txt(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let found_txt = |list: &[&str]| list.join(" | ");
    match &e.rule {
        Rule::Addr(want) => {
            let got: Vec<IpAddr> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Addr(ip) => Some(*ip),
                    _ => None,
                })
                .collect();
            if got.is_empty() {
                Verdict::Missing
            } else if want.iter().all(|w| got.contains(w)) {
                Verdict::Ok
            } else {
                Verdict::Wrong(
                    got.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
        }
        Rule::Mx(host) => {
            let got: Vec<&String> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Mx(h) => Some(h),
                    _ => None,
                })
                .collect();
            if got.is_empty() {
                Verdict::Missing
            } else if got.iter().any(|h| norm_name(h) == norm_name(host)) {
                Verdict::Ok
            } else {
                Verdict::Wrong(got.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(" "))
            }
        }
        Rule::TxtExact { prefix, value } => {
            let mine: Vec<&str> = txts
                .iter()
                .copied()
                .filter(|t| {
                    t.to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
                })
                .collect();
            match mine.as_slice() {
                [] => Verdict::Missing,
                [one] if norm_txt(one) == norm_txt(value) => Verdict::Ok,
                _ => Verdict::Wrong(found_txt(&mine)),
            }
        }
        Rule::DkimKey(p) => {
            let keys: Vec<&str> = txts
                .iter()
                .copied()
                .filter(|t| dkim_tag(t, "p").is_some())
                .collect();
            if keys.is_empty() {
                Verdict::Missing
            } else if keys.iter().any(|t| dkim_tag(t, "p").as_deref() == Some(p)) {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!("another key: {}", found_txt(&keys)))
            }
        }
        Rule::TxtTags { prefix, tags } => {
            let mine: Vec<&str> = txts
                .iter()
                .copied()
                .filter(|t| {
                    t.to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
                })
                .collect();
            let [one] = mine.as_slice() else {
                return if mine.is_empty() {
                    Verdict::Missing
                } else {
                    Verdict::Wrong(format!("{} records: {}", mine.len(), found_txt(&mine)))
                };
            };
            let ok = tags.iter().all(|(k, v)| match (dkim_tag(one, k), v) {
                (Some(got), Some(want)) => got.eq_ignore_ascii_case(want),
                (Some(got), None) => !got.is_empty(),
                (None, _) => false,
            });
            if ok {
                Verdict::Ok
            } else {
                Verdict::Wrong((*one).to_owned())
            }
        }
        Rule::Alias(target) => {
            for a in answers {
                if let Answer::Cname(c) = a {
                    return if norm_name(c) == norm_name(target) {
                        Verdict::Ok
                    } else {
                        Verdict::Wrong(format!("CNAME {c}"))
                    };
                }
            }
            let got: Vec<IpAddr> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Addr(ip) => Some(*ip),
                    _ => None,
                })
                .collect();
            if got.is_empty() {
                Verdict::Missing
            } else if !target_addrs.is_empty() && got.iter().all(|g| target_addrs.contains(g)) {
                Verdict::Ok
            } else {
                Verdict::Wrong(format!(
                    "addresses {} (not those of {target})",
                    got.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            }
        }
        Rule::Srv(port, target) => {
            let got: Vec<(u16, &String)> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Srv(p, t) => Some((*p, t)),
                    _ => None,
                })
                .collect();
            if got.is_empty() {
                Verdict::Missing
            } else if got
                .iter()
                .any(|(p, t)| p == port && norm_name(t) == norm_name(target))
            {
                Verdict::Ok
            } else {
                Verdict::Wrong(
                    got.iter()
                        .map(|(p, t)| format!("{p} {t}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
        }
    }
}

/// Why a lookup gave no verdict (the resolvers' or the network's fault).
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {name} {rtype} failed: {why}")]
pub struct LookupError {
    pub name: String,
    pub rtype: &'static str,
    pub why: String,
}

/// Ask `resolver` for `name`'s records of `rtype`; "no such records" is
/// an empty answer, other failures an error.
pub async fn lookup(
    resolver: &mail_auth::hickory_resolver::TokioResolver,
    name: &str,
    rtype: &'static str,
) -> Result<Vec<Answer>, LookupError> {
    use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
    let err = |why: String| LookupError {
        name: name.to_owned(),
        rtype,
        why,
    };
    let t = match rtype {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        "CNAME" => RecordType::CNAME,
        "SRV" => RecordType::SRV,
        _ => return Err(err("unknown record type".into())),
    };
    let res = match resolver.lookup(name, t).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut out = Vec::new();
    for r in res.record_iter() {
        match r.data() {
            RData::A(a) => out.push(Answer::Addr(IpAddr::V4(a.0))),
            RData::AAAA(a) => out.push(Answer::Addr(IpAddr::V6(a.0))),
            RData::MX(mx) => out.push(Answer::Mx(mx.exchange().to_string())),
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data()
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                out.push(Answer::Txt(String::from_utf8_lossy(&joined).into_owned()));
            }
            RData::CNAME(c) => out.push(Answer::Cname(c.0.to_string())),
            RData::SRV(s) => out.push(Answer::Srv(s.port(), s.target().to_string())),
            _ => {}
        }
    }
    Ok(out)
}

/// The relay's own MTA-STS policy (RFC 8461 §3.2), as chatmail's
/// `mta-sts.txt.j2`: the web side serves it, and its `_mta-sts` id is made
/// from it ([`mta_sts_id`]).
pub fn mta_sts_policy(domain: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {domain}\nmax_age: 2419200\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs_records() -> Vec<Expected> {
        let domains = ["chat.example.org".to_string()];
        let addrs: [IpAddr; 2] = [
            "203.0.113.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ];
        let dkim = [("dkim".to_string(), "v=DKIM1; k=rsa; p=AAAA".to_string())];
        expected(&Inputs {
            domains: &domains,
            addrs: &addrs,
            dkim: &dkim,
        })
    }

    #[test]
    fn zone_lines_as_chatmail_prints_them() {
        let lines: Vec<String> = inputs_records().iter().map(zone_line).collect();
        let id = mta_sts_id("chat.example.org");
        assert_eq!(id.len(), 16);
        let want = [
            "chat.example.org.                        3600   IN  A      203.0.113.10".to_string(),
            "chat.example.org.                        3600   IN  AAAA   2001:db8::10".into(),
            "chat.example.org.                        3600   IN  MX     10 chat.example.org.".into(),
            "dkim._domainkey.chat.example.org.        3600   IN  TXT    \"v=DKIM1; k=rsa; p=AAAA\"".into(),
            format!("_mta-sts.chat.example.org.               3600   IN  TXT    \"v=STSv1; id={id}\""),
            "mta-sts.chat.example.org.                3600   IN  CNAME  chat.example.org.".into(),
            "chat.example.org.                        3600   IN  TXT    \"v=spf1 a mx ~all\"".into(),
            "_dmarc.chat.example.org.                 3600   IN  TXT    \"v=DMARC1;p=reject;adkim=s;aspf=s\"".into(),
            "_imaps._tcp.chat.example.org.            3600   IN  SRV    0 1 993 chat.example.org.".into(),
            "_submissions._tcp.chat.example.org.      3600   IN  SRV    0 1 465 chat.example.org.".into(),
            "autoconfig.chat.example.org.             3600   IN  CNAME  chat.example.org.".into(),
            "_smtp._tls.chat.example.org.             3600   IN  TXT    \"v=TLSRPTv1; rua=mailto:postmaster@chat.example.org\"".into(),
        ];
        assert_eq!(lines, want);
    }

    #[test]
    fn long_txt_is_split_into_strings() {
        let v = "p=".to_string() + &"A".repeat(400);
        let r = txt_rdata(&v);
        assert_eq!(
            r,
            format!("\"p={}\" \"{}\"", "A".repeat(253), "A".repeat(147))
        );
        assert_eq!(txt_rdata("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn verdicts() {
        let recs = inputs_records();
        let by = |name: &str, t: &str| {
            recs.iter()
                .find(|e| e.name == name && e.rtype == t)
                .unwrap()
                .clone()
        };
        let txt = |s: &str| Answer::Txt(s.into());
        let spf = by("chat.example.org.", "TXT");
        assert_eq!(judge(&spf, &[txt("v=spf1 a mx ~all")], &[]), Verdict::Ok);
        assert_eq!(
            judge(&spf, &[txt("google-site-verification=x")], &[]),
            Verdict::Missing
        );
        assert_eq!(
            judge(&spf, &[txt("v=spf1 -all")], &[]),
            Verdict::Wrong("v=spf1 -all".into())
        );
        let dkim = by("dkim._domainkey.chat.example.org.", "TXT");
        assert_eq!(
            judge(&dkim, &[txt("v=DKIM1; k=rsa; p=AA AA")], &[]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&dkim, &[txt("v=DKIM1; p=BBBB")], &[]),
            Verdict::Wrong(_)
        ));
        assert_eq!(judge(&dkim, &[], &[]), Verdict::Missing);
        let dmarc = by("_dmarc.chat.example.org.", "TXT");
        assert_eq!(
            judge(&dmarc, &[txt("v=DMARC1; p=reject; adkim=s; aspf=s")], &[]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&dmarc, &[txt("v=DMARC1; p=none")], &[]),
            Verdict::Wrong(_)
        ));
        let mx = by("chat.example.org.", "MX");
        assert_eq!(
            judge(&mx, &[Answer::Mx("CHAT.example.org".into())], &[]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&mx, &[Answer::Mx("mx.other.example.".into())], &[]),
            Verdict::Wrong(_)
        ));
        let sts = by("mta-sts.chat.example.org.", "CNAME");
        let host: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(
            judge(&sts, &[Answer::Cname("chat.example.org.".into())], &[]),
            Verdict::Ok
        );
        assert_eq!(judge(&sts, &[Answer::Addr(host)], &[host]), Verdict::Ok);
        assert!(matches!(
            judge(&sts, &[Answer::Addr("192.0.2.1".parse().unwrap())], &[host]),
            Verdict::Wrong(_)
        ));
        let srv = by("_imaps._tcp.chat.example.org.", "SRV");
        assert_eq!(
            judge(&srv, &[Answer::Srv(993, "chat.example.org.".into())], &[]),
            Verdict::Ok
        );
        assert!(matches!(
            judge(&srv, &[Answer::Srv(143, "chat.example.org.".into())], &[]),
            Verdict::Wrong(_)
        ));
        let a = by("chat.example.org.", "A");
        assert_eq!(judge(&a, &[Answer::Addr(host)], &[]), Verdict::Ok);
        assert!(matches!(
            judge(&a, &[Answer::Addr("192.0.2.1".parse().unwrap())], &[]),
            Verdict::Wrong(_)
        ));
    }
}
