//! Prometheus metrics, served on their own listener (`metrics: { listen }`).
//!
//! Counters are updated on the connection path with atomic increments only;
//! values that live elsewhere (registry reloads and key count, certificate
//! expiry) are read at scrape time. Label sets are bounded: routes and ALPN
//! values come from the config, handshake failure reasons from a fixed list,
//! and accounts are capped at `MAX_ACCOUNT_LABELS` (the rest count as
//! `_other`), so a flood of distinct values cannot grow memory.
//!
//! This module is a leaf: it knows nothing of the front door. The front
//! door owns a `Metrics`, updates its counters, and hands `serve` a
//! `ScrapeSource` that reports the values read at scrape time.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_head::read_head;

/// Distinct account label values kept before the rest count as `_other`.
pub const MAX_ACCOUNT_LABELS: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteAlpn {
    pub route: String,
    pub alpn: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabel {
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabel {
    pub route: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    pub names: String,
}

/// The values that live outside `Metrics`, read at each scrape.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// The key registry's figures, when client keys are configured.
    pub registry: Option<RegistryScrape>,
    /// Each served certificate's names (joined by `,`) and notAfter.
    pub certs: Vec<(String, i64)>,
    /// The bundled backend's outbound queue, with direct delivery.
    pub queue: Option<QueueScrape>,
}

/// The outbound queue at scrape time (counts since start).
#[derive(Debug, Default, Clone)]
pub struct QueueScrape {
    /// Messages in the queue.
    pub depth: usize,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipients failed for good, by reason.
    pub failed: Vec<(&'static str, u64)>,
    /// Deferred attempts (recipients), by reason.
    pub deferred: Vec<(&'static str, u64)>,
    /// Destination attempts an MTA-STS policy applied to, by mode.
    pub mta_sts: Vec<(&'static str, u64)>,
}

/// The key registry at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegistryScrape {
    /// Reloads that succeeded, since start.
    pub reloads_ok: u64,
    /// Reloads that failed, since start.
    pub reloads_failed: u64,
    /// Keys in the registry in force.
    pub keys: usize,
}

/// What the metrics endpoint serves: the counters, and the values read at
/// scrape time.
pub trait ScrapeSource: Send + Sync + 'static {
    fn metrics(&self) -> &Metrics;
    fn scrape(&self) -> Scrape;
}

pub struct Metrics {
    registry: Registry,
    pub connections_total: Family<RouteAlpn, Counter>,
    pub connections_open: Family<RouteAlpn, Gauge>,
    pub handshake_failures: Family<ReasonLabel, Counter>,
    pub authenticated: Family<AccountLabel, Counter>,
    pub unknown_keys: Counter,
    pub backend_failures: Family<RouteLabel, Counter>,
    pub backend_connect: Family<RouteLabel, Histogram>,
    pub bytes: Family<BytesLabel, Counter>,
    registry_reloads: Family<ResultLabel, Counter>,
    registry_keys: Gauge,
    cert_expiry: Family<CertLabel, Gauge>,
    /// ACME orders finished, by result (`ok` / `failed`).
    pub acme_orders: Family<ResultLabel, Counter>,
    /// Whole-configuration reloads (SIGHUP), by result (`ok` / `failed`).
    pub config_reloads: Family<ResultLabel, Counter>,
    /// 1 for the configuration in force, labelled with its file's SHA-256.
    pub config_hash: Family<HashLabel, Gauge>,
    reloads_seen: Mutex<(u64, u64)>,
    queue_depth: Gauge,
    queue_delivered: Counter,
    queue_failed: Family<ReasonLabel, Counter>,
    queue_deferred: Family<ReasonLabel, Counter>,
    mta_sts_applied: Family<ModeLabel, Counter>,
    /// What the queue counters were at the last scrape.
    queue_seen: Mutex<QueueScrape>,
    accounts_seen: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("frontdoor");
        let m = Self {
            connections_total: Family::default(),
            connections_open: Family::default(),
            handshake_failures: Family::default(),
            authenticated: Family::default(),
            unknown_keys: Counter::default(),
            backend_failures: Family::default(),
            backend_connect: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
            bytes: Family::default(),
            registry_reloads: Family::default(),
            registry_keys: Gauge::default(),
            cert_expiry: Family::default(),
            acme_orders: Family::default(),
            config_reloads: Family::default(),
            config_hash: Family::default(),
            reloads_seen: Mutex::new((0, 0)),
            queue_depth: Gauge::default(),
            queue_delivered: Counter::default(),
            queue_failed: Family::default(),
            queue_deferred: Family::default(),
            mta_sts_applied: Family::default(),
            queue_seen: Mutex::new(QueueScrape::default()),
            accounts_seen: Mutex::new(HashSet::new()),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Connections routed, by route and ALPN",
            m.connections_total.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, by route and ALPN",
            m.connections_open.clone(),
        );
        registry.register(
            "handshake_failures",
            "TLS handshakes that failed, by reason",
            m.handshake_failures.clone(),
        );
        registry.register(
            "authenticated_connections",
            "Connections with a pinned client key, by account",
            m.authenticated.clone(),
        );
        registry.register(
            "unknown_key_attempts",
            "Handshakes with a client key not in the registry",
            m.unknown_keys.clone(),
        );
        registry.register(
            "backend_connect_failures",
            "Backend connections that failed, by route",
            m.backend_failures.clone(),
        );
        registry.register(
            "backend_connect_seconds",
            "Time to connect to the backend, by route",
            m.backend_connect.clone(),
        );
        registry.register(
            "relayed_bytes",
            "Bytes relayed, by route and direction (up = client to backend)",
            m.bytes.clone(),
        );
        registry.register(
            "registry_reloads",
            "Key registry reloads, by result",
            m.registry_reloads.clone(),
        );
        registry.register(
            "registry_keys",
            "Keys in the registry in force",
            m.registry_keys.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of each served certificate, by its names",
            m.cert_expiry.clone(),
        );
        registry.register(
            "config_reloads",
            "Whole-configuration reloads, by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_info",
            "The configuration in force, labelled with the SHA-256 of its file",
            m.config_hash.clone(),
        );
        registry.register(
            "acme_orders",
            "ACME certificate orders finished, by result",
            m.acme_orders.clone(),
        );
        registry.register(
            "mail_queue_depth",
            "Messages in the outbound mail queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "mail_queue_deliveries",
            "Recipients delivered from the outbound queue",
            m.queue_delivered.clone(),
        );
        registry.register(
            "mail_queue_failures",
            "Recipients the outbound queue gave up on, by reason",
            m.queue_failed.clone(),
        );
        registry.register(
            "mail_queue_deferrals",
            "Delivery attempts left for a retry (per recipient), by reason",
            m.queue_deferred.clone(),
        );
        registry.register(
            "mail_mta_sts_policies",
            "Deliveries to a domain (one per connection attempt) an MTA-STS policy applied to, by mode",
            m.mta_sts_applied.clone(),
        );
        Self { registry, ..m }
    }

    /// Count an authenticated connection of `account` (bounded label set).
    pub fn authenticated(&self, account: &str) {
        let label = {
            let mut seen = self.accounts_seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(account) {
                account.to_owned()
            } else if seen.len() < MAX_ACCOUNT_LABELS {
                seen.insert(account.to_owned());
                account.to_owned()
            } else {
                "_other".to_owned()
            }
        };
        self.authenticated
            .get_or_create(&AccountLabel { account: label })
            .inc();
    }

    /// The text exposition, refreshed with the values read at scrape time.
    pub fn render(&self, scrape: &Scrape) -> String {
        if let Some(r) = &scrape.registry {
            let mut seen = self.reloads_seen.lock().unwrap_or_else(|e| e.into_inner());
            self.registry_reloads
                .get_or_create(&ResultLabel { result: "ok" })
                .inc_by(r.reloads_ok.saturating_sub(seen.0));
            self.registry_reloads
                .get_or_create(&ResultLabel { result: "failed" })
                .inc_by(r.reloads_failed.saturating_sub(seen.1));
            *seen = (r.reloads_ok.max(seen.0), r.reloads_failed.max(seen.1));
            self.registry_keys.set(r.keys as i64);
        }
        for (names, not_after) in &scrape.certs {
            self.cert_expiry
                .get_or_create(&CertLabel {
                    names: names.clone(),
                })
                .set(*not_after);
        }
        if let Some(q) = &scrape.queue {
            let mut seen = self.queue_seen.lock().unwrap_or_else(|e| e.into_inner());
            self.queue_depth
                .set(i64::try_from(q.depth).unwrap_or(i64::MAX));
            self.queue_delivered
                .inc_by(q.delivered.saturating_sub(seen.delivered));
            let before = |v: &[(&'static str, u64)], k: &str| {
                v.iter().find(|(r, _)| *r == k).map_or(0, |(_, n)| *n)
            };
            for (reason, n) in &q.failed {
                self.queue_failed
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n.saturating_sub(before(&seen.failed, reason)));
            }
            for (reason, n) in &q.deferred {
                self.queue_deferred
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n.saturating_sub(before(&seen.deferred, reason)));
            }
            for (mode, n) in &q.mta_sts {
                self.mta_sts_applied
                    .get_or_create(&ModeLabel { mode })
                    .inc_by(n.saturating_sub(before(&seen.mta_sts, mode)));
            }
            *seen = q.clone();
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        out
    }
}

/// Serve `GET /metrics` on `listener` until `stop`.
pub async fn serve<S: ScrapeSource>(
    listener: TcpListener,
    source: std::sync::Arc<S>,
    stop: CancellationToken,
) {
    crate::accept::run("metrics", &listener, &stop, |mut s, _| {
        let source = source.clone();
        tokio::spawn(async move {
            let Ok(head) = read_head(&mut s).await else {
                return;
            };
            let (status, body) =
                if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ") {
                    let body = source.metrics().render(&source.scrape());
                    ("200 OK", body)
                } else {
                    ("404 Not Found", "try /metrics\n".to_owned())
                };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counters_are_exported_as_increments_since_the_last_scrape() {
        let m = Metrics::new();
        let scrape = |deferred: u64, enforce: u64| Scrape {
            queue: Some(QueueScrape {
                depth: 1,
                deferred: vec![("mta_sts", deferred)],
                mta_sts: vec![("enforce", enforce)],
                ..QueueScrape::default()
            }),
            ..Scrape::default()
        };
        let out = m.render(&scrape(1, 2));
        assert!(
            out.contains("frontdoor_mail_queue_deferrals_total{reason=\"mta_sts\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("frontdoor_mail_mta_sts_policies_total{mode=\"enforce\"} 2\n"),
            "{out}"
        );
        let out = m.render(&scrape(3, 2));
        assert!(
            out.contains("frontdoor_mail_queue_deferrals_total{reason=\"mta_sts\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("frontdoor_mail_mta_sts_policies_total{mode=\"enforce\"} 2\n"),
            "{out}"
        );
    }
}
