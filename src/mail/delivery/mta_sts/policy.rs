//! MTA-STS (RFC 8461) text formats, pure: the `_mta-sts` TXT record
//! (§3.1), the policy file (§3.2) and the matching of MX host names against
//! the policy's `mx` patterns (§4.1).
//!
//! Bounds: a policy longer than [`MAX_POLICY_BYTES`] or with more than
//! [`MAX_MX_PATTERNS`] patterns is refused; `max_age` is capped at
//! [`MAX_AGE_LIMIT`] (§3.2); an `id` is 1 to 32 letters and digits.
//! Lines end in LF or CRLF (the ABNF's `sts-policy-term`, errata 6253).
//! A field that appears twice counts once (the first), except `mx`;
//! unknown fields are ignored (§3.2).

use std::time::Duration;

/// Largest policy body read (RFC 8461 §3.3 leaves the limit to the sender;
/// 64 KiB is what other implementations use).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most `mx:` lines kept.
pub const MAX_MX_PATTERNS: usize = 64;
/// `max_age` is at most about a year (RFC 8461 §3.2: 31557600 seconds).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a policy asks of senders (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Report what would fail; deliver anyway.
    Testing,
    /// No policy in force.
    None,
}

impl Mode {
    /// The policy file's spelling, also the log's.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Lower-case patterns, without a trailing dot: `host.example` or
    /// `*.example` (one label).
    pub mx: Vec<String>,
    pub max_age: Duration,
}

/// Why a policy or record was refused (the peer's text is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    #[error("policy is not UTF-8 text")]
    NotText,
    #[error("policy line {0} is not `key: value`")]
    BadLine(usize),
    #[error("policy has no {0} field")]
    Missing(&'static str),
    #[error("policy version is not STSv1")]
    BadVersion,
    #[error("policy mode is not enforce, testing or none")]
    BadMode,
    #[error("policy max_age is not a number of seconds")]
    BadMaxAge,
    #[error("policy mx pattern {0} is not a host name or *.domain")]
    BadMx(usize),
    #[error("policy has more than {MAX_MX_PATTERNS} mx patterns")]
    TooManyMx,
    #[error("_mta-sts record: {0}")]
    Record(&'static str),
}

/// Whether `s` is a DNS host name we accept in a pattern: labels of
/// letters, digits, `-` and `_`, 1 to 63 bytes each, at most 253 in all.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parse a policy file (RFC 8461 §3.2).
pub fn parse(text: &[u8]) -> Result<Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge);
    }
    let text = std::str::from_utf8(text).map_err(|_| PolicyError::NotText)?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(PolicyError::BadLine(i + 1));
        };
        let (key, value) = (key.trim(), value.trim_matches([' ', '\t']));
        match key {
            "version" if version.is_none() => version = Some(value),
            "mode" if mode.is_none() => mode = Some(value),
            "max_age" if max_age.is_none() => max_age = Some(value),
            "mx" => {
                if mx.len() == MAX_MX_PATTERNS {
                    return Err(PolicyError::TooManyMx);
                }
                let p = value.trim_end_matches('.').to_ascii_lowercase();
                let host = p.strip_prefix("*.").unwrap_or(&p);
                if !is_host(host) {
                    return Err(PolicyError::BadMx(i + 1));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    if version.ok_or(PolicyError::Missing("version"))? != "STSv1" {
        return Err(PolicyError::BadVersion);
    }
    let mode = match mode.ok_or(PolicyError::Missing("mode"))? {
        "enforce" => Mode::Enforce,
        "testing" => Mode::Testing,
        "none" => Mode::None,
        _ => return Err(PolicyError::BadMode),
    };
    let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
    if max_age.is_empty() || max_age.len() > 10 || !max_age.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyError::BadMaxAge);
    }
    let secs: u64 = max_age.parse().map_err(|_| PolicyError::BadMaxAge)?;
    if mx.is_empty() && mode != Mode::None {
        return Err(PolicyError::Missing("mx"));
    }
    Ok(Policy {
        mode,
        mx,
        max_age: Duration::from_secs(secs.min(MAX_AGE_LIMIT)),
    })
}

/// Whether MX host `host` matches `pattern` (RFC 8461 §4.1): equal, case
/// insensitive, trailing dots ignored; `*.d` matches one label left of `d`.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => host == pattern,
    }
}

impl Policy {
    /// Whether `host` matches any of the policy's patterns.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// The `id` of the `_mta-sts` TXT records of a domain (RFC 8461 §3.1):
/// records not starting with `v=STSv1` are ignored; `Ok(None)` when there
/// is none; more than one, or one without a valid `id`, is an error (the
/// sender then acts as if there were none, unless it has a cached policy).
pub fn record_id<'a>(
    records: impl IntoIterator<Item = &'a str>,
) -> Result<Option<String>, PolicyError> {
    let sts: Vec<&str> = records
        .into_iter()
        .filter(|r| {
            r.strip_prefix("v=STSv1").is_some_and(|rest| {
                rest.trim_start().is_empty() || rest.trim_start().starts_with(';')
            })
        })
        .collect();
    let record = match sts.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(PolicyError::Record("more than one v=STSv1 record")),
    };
    let id = record
        .split(';')
        .skip(1)
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim())
        .ok_or(PolicyError::Record("no id"))?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(PolicyError::Record("id is not 1 to 32 letters and digits"));
    }
    Ok(Some(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_and_crlf_alike() {
        let lf = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n";
        let crlf = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n";
        let want = Policy {
            mode: Mode::Enforce,
            mx: vec!["mail.example.com".into(), "*.example.net".into()],
            max_age: Duration::from_secs(86400),
        };
        assert_eq!(parse(lf).unwrap(), want);
        assert_eq!(parse(crlf).unwrap(), want);
        // No final line end, spaces and tabs around values, unknown fields.
        let loose =
            b"version:STSv1\nmode:\ttesting \nfoo: bar\nmx: MAIL.Example.COM.\nmax_age: 600";
        let p = parse(loose).unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.mx, vec!["mail.example.com"]);
        // The first of repeated fields counts.
        let twice = b"version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n";
        let p = parse(twice).unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::Testing, Duration::from_secs(1)));
        // mode none needs no mx.
        assert_eq!(
            parse(b"version: STSv1\nmode: none\nmax_age: 60\n")
                .unwrap()
                .mode,
            Mode::None
        );
    }

    #[test]
    fn refuses_hostile_or_incomplete_policies() {
        let ok = "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\n";
        let cases: &[(&[u8], PolicyError)] = &[
            (
                b"mode: enforce\nmx: a.example\nmax_age: 60\n",
                PolicyError::Missing("version"),
            ),
            (
                b"version: STSv1\nmx: a.example\nmax_age: 60\n",
                PolicyError::Missing("mode"),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\n",
                PolicyError::Missing("max_age"),
            ),
            (
                b"version: STSv1\nmode: enforce\nmax_age: 60\n",
                PolicyError::Missing("mx"),
            ),
            (
                b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 60\n",
                PolicyError::BadVersion,
            ),
            (
                b"version: STSv1\nmode: ENFORCE\nmx: a.example\nmax_age: 60\n",
                PolicyError::BadMode,
            ),
            (
                b"version: STSv1\nmode: report\nmx: a.example\nmax_age: 60\n",
                PolicyError::BadMode,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
                PolicyError::BadMaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
                PolicyError::BadMaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: \n",
                PolicyError::BadMaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 60\n",
                PolicyError::BadMx(3),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 60\n",
                PolicyError::BadMx(3),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a example\nmax_age: 60\n",
                PolicyError::BadMx(3),
            ),
            (
                b"version: STSv1\nmode: enforce\nmx:\nmax_age: 60\n",
                PolicyError::BadMx(3),
            ),
            (b"version: STSv1\nmode enforce\n", PolicyError::BadLine(2)),
            (b"<html>\n<body>not found</body>\n", PolicyError::BadLine(1)),
            (b"version: STSv1\xff\n", PolicyError::NotText),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse(text).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        let mut big = ok.as_bytes().to_vec();
        big.resize(MAX_POLICY_BYTES + 1, b'\n');
        assert_eq!(parse(&big), Err(PolicyError::TooLarge));
        let mut many = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
        for i in 0..=MAX_MX_PATTERNS {
            many.push_str(&format!("mx: m{i}.example\n"));
        }
        assert_eq!(parse(many.as_bytes()), Err(PolicyError::TooManyMx));
        let long_label = format!("{ok}mx: {}.example\n", "a".repeat(64));
        assert_eq!(parse(long_label.as_bytes()), Err(PolicyError::BadMx(5)));
        // max_age beyond a year is capped, not refused.
        let p =
            parse(b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n").unwrap();
        assert_eq!(p.max_age, Duration::from_secs(MAX_AGE_LIMIT));
    }

    #[test]
    fn mx_patterns_match_exact_names_and_one_wildcard_label() {
        assert!(mx_matches("mail.example.com", "mail.example.com"));
        assert!(mx_matches("mail.example.com", "MAIL.Example.com."));
        assert!(!mx_matches("mail.example.com", "mail.example.com.evil"));
        assert!(!mx_matches("mail.example.com", "xmail.example.com"));
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", "a.b.example.com"));
        assert!(!mx_matches("*.example.com", ".example.com"));
        assert!(!mx_matches("*.example.com", "mx1.example.org"));
        let p =
            parse(b"version: STSv1\nmode: enforce\nmx: a.example\nmx: *.b.example\nmax_age: 1\n")
                .unwrap();
        assert!(p.allows("a.example") && p.allows("x.b.example"));
        assert!(!p.allows("b.example") && !p.allows("c.example"));
    }

    #[test]
    fn txt_records_give_one_id() {
        assert_eq!(
            record_id(["v=STSv1; id=20260101T000000"])
                .unwrap()
                .as_deref(),
            Some("20260101T000000")
        );
        assert_eq!(
            record_id(["v=spf1 -all", "v=STSv1;id=abc;"])
                .unwrap()
                .as_deref(),
            Some("abc")
        );
        assert_eq!(record_id(["v=spf1 -all"]).unwrap(), None);
        assert_eq!(record_id(["v=STSv10; id=abc"]).unwrap(), None);
        assert!(record_id(["v=STSv1; id=a", "v=STSv1; id=b"]).is_err());
        assert!(record_id(["v=STSv1;"]).is_err());
        assert!(record_id(["v=STSv1; id=has-dash"]).is_err());
        assert!(record_id([format!("v=STSv1; id={}", "a".repeat(33)).as_str()]).is_err());
    }

    #[test]
    fn the_policy_we_serve_parses_and_names_our_mx() {
        let domain = "chat.example.org";
        let served = crate::mail::dns_records::mta_sts_policy(domain);
        let p = parse(served.as_bytes()).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        // `frontdoor mail dns` publishes `D. MX 10 D.`: the MX host is the domain.
        let records = crate::mail::dns_records::expected(&crate::mail::dns_records::Inputs {
            domains: &[domain.to_owned()],
            addrs: &[],
            dkim: &[],
        });
        let mx = records
            .iter()
            .find(|r| r.rtype == "MX")
            .and_then(|r| r.rdata.clone())
            .unwrap();
        let host = mx.split_whitespace().last().unwrap();
        assert!(p.allows(host), "{host} not allowed by {served}");
        let id = crate::mail::dns_records::mta_sts_id(domain);
        assert_eq!(
            record_id([format!("v=STSv1; id={id}").as_str()]).unwrap(),
            Some(id)
        );
    }
}
