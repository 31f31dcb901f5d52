//! MTA-STS (RFC 8461) for outbound delivery: which policy applies to a
//! recipient domain ([`Sts::policy`]), following §5.1:
//!
//! 1. look up `_mta-sts.<domain>` TXT through the worker's resolver;
//! 2. a `v=STSv1` record whose `id` equals the cached policy's, with that
//!    policy unexpired: the cached policy applies, nothing is fetched;
//! 3. a record with another `id`, or no cached policy (or an expired one):
//!    the policy is fetched ([`fetch`]), parsed ([`policy`]) and cached
//!    durably ([`cache`]) with that `id` until fetch time + `max_age`;
//! 4. no record, a bad record, a DNS failure, or a failed fetch or parse:
//!    an unexpired cached policy still applies (whatever its `id`); without
//!    one, no policy does.
//!
//! What the worker does with the policy (enforce, testing) is in
//! [`crate::mail::delivery`]. Peer text that reaches the log is escaped.

pub mod cache;
pub mod fetch;
pub mod policy;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::log_safe::Escaped;
use crate::mail::store::unix_now;
pub use cache::Cached;
pub use policy::{Mode, Policy};

/// Domains whose cached policy is kept in memory as well (beyond, the file
/// is read again).
const MEMO_MAX: usize = 10_000;

/// The policy lookups of the delivery worker.
pub struct Sts {
    dir: PathBuf,
    /// Verifies the web PKI (roots plus `mail.delivery.ca_file`), ALPN
    /// `http/1.1`.
    web_tls: tokio_rustls::TlsConnector,
    memo: Mutex<HashMap<String, Option<Cached>>>,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Sts {
    /// Policies cached in `<data_dir>/mta-sts/`, fetched with `web_tls`.
    pub fn new(data_dir: &std::path::Path, web_tls: tokio_rustls::TlsConnector) -> Sts {
        Sts {
            dir: cache::dir(data_dir),
            web_tls,
            memo: Mutex::new(HashMap::new()),
        }
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Cached>>> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn cached(&self, domain: &str) -> Option<Cached> {
        if let Some(c) = self.memo().get(domain) {
            return c.clone();
        }
        let (dir, d) = (self.dir.clone(), domain.to_owned());
        let c = match tokio::task::spawn_blocking(move || cache::load(&dir, &d)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(domain = %Escaped(domain), error = %e, "MTA-STS: cached policy unusable");
                None
            }
            Err(_) => None,
        };
        self.remember(domain, c.clone());
        c
    }

    fn remember(&self, domain: &str, c: Option<Cached>) {
        let mut m = self.memo();
        if m.len() >= MEMO_MAX {
            m.clear();
        }
        m.insert(domain.to_owned(), c);
    }

    /// The policy in force for `domain` (lower case), if any.
    pub async fn policy(
        &self,
        resolver: &hickory_resolver::TokioResolver,
        domain: &str,
    ) -> Option<Cached> {
        let now = unix_now();
        let valid = self.cached(domain).await.filter(|c| c.expires > now);
        let name = format!("_mta-sts.{}.", domain.trim_end_matches('.'));
        let id = match crate::mail::dns_records::lookup(resolver, &name, "TXT").await {
            Ok(answers) => {
                let txt: Vec<String> = answers
                    .into_iter()
                    .filter_map(|a| match a {
                        crate::mail::dns_records::Answer::Txt(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                match policy::record_id(txt.iter().map(String::as_str)) {
                    Ok(Some(id)) => id,
                    Ok(None) => return valid,
                    Err(e) => {
                        tracing::info!(domain = %Escaped(domain), error = %e, "MTA-STS: record ignored");
                        return valid;
                    }
                }
            }
            Err(e) => {
                tracing::info!(domain = %Escaped(domain), error = %e, "MTA-STS: record lookup failed");
                return valid;
            }
        };
        if let Some(c) = valid.as_ref().filter(|c| c.id == id) {
            return Some(c.clone());
        }
        let fetched = match fetch::fetch(resolver, &self.web_tls, domain).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(domain = %Escaped(domain), id = %id, error = %Escaped(&e), cached = valid.is_some(), "MTA-STS: policy fetch failed");
                return valid;
            }
        };
        let parsed = match policy::parse(&fetched) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(domain = %Escaped(domain), id = %id, error = %e, cached = valid.is_some(), "MTA-STS: fetched policy refused");
                return valid;
            }
        };
        let max_age = i64::try_from(parsed.max_age.as_secs()).unwrap_or(i64::MAX);
        let c = Cached {
            id,
            fetched: now,
            expires: now.saturating_add(max_age),
            // parse() took it as UTF-8.
            text: String::from_utf8_lossy(&fetched).into_owned(),
            policy: parsed,
        };
        tracing::info!(
            domain = %Escaped(domain),
            id = %c.id,
            mode = c.policy.mode.as_str(),
            mx = %Escaped(c.policy.mx.join(",")),
            max_age = c.policy.max_age.as_secs(),
            "MTA-STS: policy fetched"
        );
        let (dir, d, keep) = (self.dir.clone(), domain.to_owned(), c.clone());
        match tokio::task::spawn_blocking(move || cache::store(&dir, &d, &keep)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "MTA-STS: caching the policy failed"),
            Err(e) => tracing::warn!(error = %e, "MTA-STS: cache task failed"),
        }
        self.remember(domain, Some(c.clone()));
        Some(c)
    }
}
