//! Direct delivery to other relays (`mail.delivery.direct`, the default in
//! chatmail mode without a smarthost): the worker that empties the durable
//! queue ([`crate::mail::store::queue`]).
//!
//! - Submission queues a message for its remote recipients (already DKIM
//!   signed) and answers `250` only once the queue file is durable
//!   ([`Handle::enqueue`]).
//! - The worker groups due recipients by domain, looks up the domain's MX
//!   hosts ([`mx`]), opens one connection per domain (STARTTLS required,
//!   the certificate checked as `mail.delivery.tls` says: [`client`]) and
//!   sends every due message for that domain over it.
//! - Each message's per-recipient results are made durable right after the
//!   peer's reply, before the next message: delivered recipients are never
//!   sent again unless a crash falls between the peer's `250` and that
//!   write (at least once; see the queue's invariants).
//! - A 4xx or a network failure leaves recipients pending, retried after
//!   `mail.queue.retry`, doubling up to `mail.queue.max_retry`, until
//!   `mail.queue.lifetime` has passed since queueing; a 5xx, a domain
//!   without mail hosts, or the end of the lifetime fails them for good and
//!   puts a delivery report ([`dsn`]) into the local sender's INBOX.
//! - HTTPS first (`mail.delivery.mxdeliv`, [`mxdeliv`]): each message is
//!   posted to `https://<domain>/mxdeliv`; only a `200` delivers, anything
//!   else hands it to SMTP in the same attempt, and a peer without the
//!   path is sent SMTP only for an hour.
//! - MTA-STS ([`mta_sts`]): before connecting, the domain's policy is
//!   looked up (cached or fetched). `enforce`: only MX hosts the policy
//!   names are tried, and their certificate must verify for the MX name
//!   (the system's roots plus `mail.delivery.ca_file`, even with
//!   `mail.delivery.tls: encrypt`); no matching host or a failed TLS
//!   handshake defers the message (reason `mta_sts`). `testing`: what
//!   would fail (hosts outside the policy; under `encrypt`, a certificate
//!   that would not verify) is logged and delivery goes on as without a
//!   policy.
//! - `frontdoor mail queue --flush` leaves a `flush` file in the queue
//!   directory; the worker looks for it every second and retries all.
//! - At most [`MAX_DESTINATIONS`] domains are served at once.

pub mod any_cert;
pub mod client;
pub mod dsn;
pub mod https;
pub mod mta_sts;
pub mod mx;
pub mod mxdeliv;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mail::accounts::{domain_of, Accounts};
use crate::mail::config::{DeliveryTls, MailConfig};
use crate::mail::store::queue::{Entry, Queue, RcptStatus};
use crate::mail::store::{unix_now, Store, StoreError};
use client::{ClientError, Conn, Outcome};

/// Domains delivered to at the same time.
pub const MAX_DESTINATIONS: usize = 16;
/// Messages sent over one connection before it is closed and the rest wait
/// for the next round (keeps one busy domain from holding a slot forever).
pub const MAX_PER_CONNECTION: usize = 100;
/// How often the worker looks for a flush request.
const FLUSH_POLL: Duration = Duration::from_secs(1);

/// Counters for the metrics endpoint (read at scrape time).
#[derive(Debug, Default)]
pub struct Stats {
    /// Recipients delivered.
    pub delivered: AtomicU64,
    /// Recipients failed for good, by reason.
    failed: Mutex<BTreeMap<&'static str, u64>>,
    /// Attempts that left recipients pending, by reason.
    deferred: Mutex<BTreeMap<&'static str, u64>>,
    /// Destination attempts an MTA-STS policy applied to, by mode.
    mta_sts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    fn add(map: &Mutex<BTreeMap<&'static str, u64>>, reason: &'static str, n: u64) {
        *map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_insert(0) += n;
    }

    /// Failures for good by reason (`refused`, `no_mail_host`, `expired`).
    pub fn failed(&self) -> Vec<(&'static str, u64)> {
        let g = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Deferrals by reason (`peer_4xx`, `connection`, `dns`, `mta_sts`).
    pub fn deferred(&self) -> Vec<(&'static str, u64)> {
        let g = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Destination attempts an MTA-STS policy applied to, by mode
    /// (`enforce`, `testing`, `none`).
    pub fn mta_sts(&self) -> Vec<(&'static str, u64)> {
        let g = self.mta_sts.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// What sessions and the metrics endpoint hold of the worker.
#[derive(Debug)]
pub struct Handle {
    pub queue: Arc<Queue>,
    pub stats: Arc<Stats>,
    wake: Notify,
}

impl Handle {
    /// Queue `msg` durably (blocking file I/O on the blocking pool), then
    /// wake the worker. `Ok` means the sender may be told `250`.
    pub async fn enqueue(
        &self,
        from: &str,
        rcpts: &[String],
        msg: Vec<u8>,
    ) -> Result<String, StoreError> {
        let (q, from, rcpts) = (self.queue.clone(), from.to_owned(), rcpts.to_vec());
        let e = tokio::task::spawn_blocking(move || q.enqueue(&from, &rcpts, &msg))
            .await
            .map_err(|e| StoreError::Corrupt(format!("queue task: {e}")))??;
        self.wake.notify_one();
        Ok(e.id)
    }

    /// Entries in the queue now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }
}

struct Worker {
    handle: Arc<Handle>,
    store: Store,
    accounts: Accounts,
    cfg: Arc<MailConfig>,
    mx: mx::Mx,
    /// As `mail.delivery.tls` says.
    tls: tokio_rustls::TlsConnector,
    /// Always verifying (an `enforce` policy's connections).
    verified: tokio_rustls::TlsConnector,
    /// With `encrypt`: the verifier a `testing` policy's connections
    /// report against.
    testing: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    sts: mta_sts::Sts,
    /// `POST /mxdeliv`: as `mail.delivery.tls` says, and always verifying
    /// (under an `enforce` policy); both offer ALPN `http/1.1`.
    https: tokio_rustls::TlsConnector,
    https_verified: tokio_rustls::TlsConnector,
    /// Peers found without `/mxdeliv`.
    no_mxdeliv: mxdeliv::Unsupported,
    busy: Mutex<HashSet<String>>,
    shutdown: CancellationToken,
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("mail.delivery: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Open the queue of `cfg.data_dir` (the store's lock is held by the
/// caller) and start the worker on `tracker`.
pub fn start(
    cfg: Arc<MailConfig>,
    store: Store,
    accounts: Accounts,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Arc<Handle>, DeliveryError> {
    let queue = Arc::new(Queue::open(&cfg.data_dir)?);
    let ca = cfg.delivery.ca_file.as_deref();
    let verified_cfg = client::client_config(true, ca).map_err(DeliveryError::Tls)?;
    let verified = tokio_rustls::TlsConnector::from(Arc::new(verified_cfg.clone()));
    let (tls, testing) = match cfg.delivery.tls {
        DeliveryTls::Verify => (verified.clone(), None),
        DeliveryTls::Encrypt => (
            client::tls_connector(false, ca).map_err(DeliveryError::Tls)?,
            Some(client::web_pki_verifier(ca).map_err(DeliveryError::Tls)?),
        ),
    };
    let mut web_cfg = verified_cfg;
    web_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let https_verified = tokio_rustls::TlsConnector::from(Arc::new(web_cfg));
    let sts = mta_sts::Sts::new(&cfg.data_dir, https_verified.clone());
    let https = match cfg.delivery.tls {
        DeliveryTls::Verify => https_verified.clone(),
        DeliveryTls::Encrypt => {
            let mut c = client::client_config(false, ca).map_err(DeliveryError::Tls)?;
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(c))
        }
    };
    let n = queue.len();
    if n > 0 {
        tracing::info!(entries = n, "queue: resuming deliveries");
    }
    let handle = Arc::new(Handle {
        queue,
        stats: Arc::default(),
        wake: Notify::new(),
    });
    let w = Arc::new(Worker {
        handle: handle.clone(),
        store,
        accounts,
        mx: mx::Mx::new(&cfg.dns_resolvers),
        cfg,
        tls,
        verified,
        testing,
        sts,
        https,
        https_verified,
        no_mxdeliv: mxdeliv::Unsupported::default(),
        busy: Mutex::new(HashSet::new()),
        shutdown,
    });
    let t = tracker.clone();
    tracker.spawn(async move { w.run(t).await });
    Ok(handle)
}

/// The wait before attempt number `attempts + 1`.
pub fn backoff(retry: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX);
    retry.saturating_mul(factor).min(max)
}

/// Due work for one domain: entries and their pending recipients there.
type Batch = Vec<(Entry, Vec<String>)>;

/// How a domain's MX hosts are tried, after its MTA-STS policy.
struct Route {
    hosts: Vec<mx::Host>,
    tls: tokio_rustls::TlsConnector,
    sts: Option<mta_sts::Cached>,
    /// A `testing` policy under `encrypt`: what verification would refuse.
    reporting: Option<Arc<any_cert::Reporting>>,
}

impl Worker {
    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(self: Arc<Self>, tracker: TaskTracker) {
        let done = Arc::new(Notify::new());
        loop {
            if self.handle.queue.take_flush_request() {
                tracing::info!(
                    entries = self.handle.queue.len(),
                    "queue: flush requested, retrying every entry now"
                );
                self.handle.queue.make_all_due(unix_now());
            }
            let now = unix_now();
            let mut groups: BTreeMap<String, Batch> = BTreeMap::new();
            let mut next_due: Option<i64> = None;
            {
                let busy = self.busy();
                for e in self.handle.queue.entries() {
                    if e.next_attempt > now {
                        next_due = Some(next_due.map_or(e.next_attempt, |n| n.min(e.next_attempt)));
                        continue;
                    }
                    let mut by_dest: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for r in e.pending() {
                        let d = domain_of(&r.addr)
                            .trim_end_matches('.')
                            .to_ascii_lowercase();
                        by_dest.entry(d).or_default().push(r.addr.clone());
                    }
                    for (d, rcpts) in by_dest {
                        if busy.contains(&d) {
                            continue;
                        }
                        let g = groups.entry(d).or_default();
                        if g.len() < MAX_PER_CONNECTION {
                            g.push((e.clone(), rcpts));
                        }
                    }
                }
            }
            for (dest, batch) in groups {
                {
                    let mut busy = self.busy();
                    if busy.len() >= MAX_DESTINATIONS {
                        break;
                    }
                    busy.insert(dest.clone());
                }
                let (w, done) = (self.clone(), done.clone());
                tracker.spawn(async move {
                    w.deliver_domain(&dest, batch).await;
                    w.busy().remove(&dest);
                    done.notify_one();
                });
            }
            let wait = next_due
                .map(|n| Duration::from_secs(n.saturating_sub(now).max(0) as u64))
                .unwrap_or(FLUSH_POLL)
                .min(FLUSH_POLL);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.handle.wake.notified() => {}
                _ = done.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Connect to the first MX host that answers and takes TLS.
    async fn connect(
        &self,
        hosts: &[mx::Host],
        tls: &tokio_rustls::TlsConnector,
    ) -> Result<Conn, ClientError> {
        let mut last = ClientError::Temporary("no mail host".into());
        for h in hosts {
            for ip in h.addrs.iter().take(4) {
                let addr = SocketAddr::new(*ip, self.cfg.delivery.port);
                match Conn::open(addr, &h.name, &self.cfg.hostname, Some(tls)).await {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::info!(host = %h.name, %addr, error = %e, "queue: mail host not usable");
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }

    async fn deliver_domain(&self, dest: &str, batch: Batch) {
        let hosts = match self.mx.hosts(dest).await {
            Ok(h) => h,
            Err(mx::MxError::Permanent(why)) => {
                for (e, rcpts) in batch {
                    let res = rcpts
                        .iter()
                        .map(|r| (r.clone(), Outcome::Permanent(why.clone())))
                        .collect();
                    self.settle(&e, res, None, "no_mail_host").await;
                }
                return;
            }
            Err(e) => {
                let why = e.to_string();
                for (e, rcpts) in batch {
                    let res = rcpts
                        .iter()
                        .map(|r| (r.clone(), Outcome::Temporary(why.clone())))
                        .collect();
                    self.settle(&e, res, None, "dns").await;
                }
                return;
            }
        };
        let Some(Route {
            hosts,
            tls,
            sts,
            reporting,
        }) = self.apply_sts(dest, hosts, &batch).await
        else {
            return;
        };
        let batch = if self.cfg.delivery.mxdeliv && !self.no_mxdeliv.marked(dest) {
            self.over_https(dest, batch, sts.as_ref()).await
        } else {
            batch
        };
        let mut conn: Option<Conn> = None;
        let mut down: Option<(String, &'static str)> = None;
        for (e, rcpts) in batch {
            if self.shutdown.is_cancelled() {
                break;
            }
            if let Some((why, reason)) = &down {
                let res = rcpts
                    .iter()
                    .map(|r| (r.clone(), Outcome::Temporary(why.clone())))
                    .collect();
                self.settle(&e, res, None, reason).await;
                continue;
            }
            let q = self.handle.queue.clone();
            let id = e.id.clone();
            let msg = match tokio::task::spawn_blocking(move || q.message(&id)).await {
                Ok(Ok(m)) => m,
                Ok(Err(err)) => {
                    tracing::error!(id = %e.id, error = %err, "queue: cannot read a queued message");
                    continue;
                }
                Err(err) => {
                    tracing::error!(id = %e.id, error = %err, "queue: read task failed");
                    continue;
                }
            };
            if conn.is_none() {
                match self.connect(&hosts, &tls).await {
                    Ok(c) => {
                        if let Some((name, why)) = reporting.as_ref().and_then(|r| r.take_refusal())
                        {
                            tracing::warn!(domain = %crate::log_safe::Escaped(dest), host = %name, error = %why, "MTA-STS testing: this certificate would not pass an enforce policy; delivering anyway");
                        }
                        conn = Some(c);
                    }
                    Err(err) => {
                        let (why, reason) = match (&sts, &err) {
                            (Some(p), ClientError::Tls(_))
                                if p.policy.mode == mta_sts::Mode::Enforce =>
                            {
                                (
                                    format!(
                                        "MTA-STS policy of {dest} (enforce, id {}): {err}",
                                        p.id
                                    ),
                                    "mta_sts",
                                )
                            }
                            _ => (err.to_string(), "connection"),
                        };
                        if reason == "mta_sts" {
                            tracing::warn!(domain = %crate::log_safe::Escaped(dest), error = %crate::log_safe::Escaped(&why), "MTA-STS: no mail host passed the policy; deferred");
                        }
                        down = Some((why.clone(), reason));
                        let res = rcpts
                            .iter()
                            .map(|r| (r.clone(), Outcome::Temporary(why.clone())))
                            .collect();
                        self.settle(&e, res, None, reason).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let host = c.host.clone();
            let tls = c.tls;
            let res = match c.send_message(&e.from, &rcpts, &msg).await {
                Ok(outcomes) => rcpts.iter().cloned().zip(outcomes).collect::<Vec<_>>(),
                Err(err) => {
                    // The connection broke mid-transaction: what the peer
                    // holds is unknown, so the recipients stay pending (a
                    // retry may deliver twice; RFC 5321 §6.1 accepts that).
                    conn = None;
                    let why = err.to_string();
                    rcpts
                        .iter()
                        .map(|r| (r.clone(), Outcome::Temporary(why.clone())))
                        .collect()
                }
            };
            for (r, o) in &res {
                if let Outcome::Delivered(reply) = o {
                    let mta_sts = sts.as_ref().map_or("none", |p| p.policy.mode.as_str());
                    tracing::info!(id = %e.id, rcpt = %r, host = %host, tls, via = "smtp", mta_sts, reply = %reply, "queue: delivered");
                }
            }
            self.settle(&e, res, Some((host, msg)), "peer_4xx").await;
        }
        if let Some(c) = conn {
            c.quit().await;
        }
    }

    /// Post each message of `batch` to `dest`'s `/mxdeliv`, one connection
    /// for all: those the peer refuses, and all from the first that fails
    /// to go at all, are returned for SMTP.
    /// Under an `enforce` policy the domain's own name must be one of the
    /// policy's mail hosts, and its certificate must verify.
    async fn over_https(&self, dest: &str, batch: Batch, sts: Option<&mta_sts::Cached>) -> Batch {
        let mode = sts.map(|p| p.policy.mode);
        let tls = match mode {
            Some(mta_sts::Mode::Enforce) => {
                if !sts.is_some_and(|p| p.policy.allows(dest)) {
                    return batch;
                }
                &self.https_verified
            }
            _ => &self.https,
        };
        let mta_sts = mode.map_or("none", |m| m.as_str());
        let mut session: Option<mxdeliv::Session> = None;
        let mut smtp = Batch::new();
        let mut rest = batch.into_iter();
        while let Some((e, rcpts)) = rest.next() {
            if self.shutdown.is_cancelled() {
                smtp.push((e, rcpts));
                smtp.extend(rest);
                return smtp;
            }
            let (q, id) = (self.handle.queue.clone(), e.id.clone());
            let msg = match tokio::task::spawn_blocking(move || q.message(&id)).await {
                Ok(Ok(m)) => Bytes::from(m),
                _ => {
                    smtp.push((e, rcpts));
                    smtp.extend(rest);
                    return smtp;
                }
            };
            if session.as_ref().is_some_and(|s| !s.is_open()) {
                session = None;
            }
            let res = match session.as_mut() {
                Some(s) => s.post(&e.from, &rcpts, msg.clone()).await,
                None => {
                    let port = self.cfg.delivery.https_port;
                    match mxdeliv::Session::open(self.mx.resolver(), tls, dest, port).await {
                        Ok(s) => session.insert(s).post(&e.from, &rcpts, msg.clone()).await,
                        Err(err) => Err(err),
                    }
                }
            };
            match res {
                Ok(()) => {
                    let host = dest.to_owned();
                    for r in &rcpts {
                        tracing::info!(id = %e.id, rcpt = %r, host = %host, tls = true, via = "https", mta_sts, reply = "200 OK", "queue: delivered");
                    }
                    let res = rcpts
                        .iter()
                        .map(|r| {
                            (
                                r.clone(),
                                Outcome::Delivered("200 OK (HTTPS /mxdeliv)".into()),
                            )
                        })
                        .collect();
                    self.settle(&e, res, Some((host, Vec::from(msg))), "peer_4xx")
                        .await;
                }
                Err(err) => {
                    tracing::info!(id = %e.id, domain = %crate::log_safe::Escaped(dest), error = %err, "queue: trying SMTP");
                    let refused = matches!(err, mxdeliv::PostError::Refused(_));
                    if matches!(err, mxdeliv::PostError::Unsupported(_)) {
                        self.no_mxdeliv.mark(dest);
                    }
                    smtp.push((e, rcpts));
                    if !refused {
                        smtp.extend(rest);
                        return smtp;
                    }
                }
            }
        }
        smtp
    }

    /// The domain's MTA-STS policy applied to its MX hosts: the hosts to
    /// try, the TLS connector to use and the policy. `None` when an
    /// `enforce` policy leaves no host (the batch is then deferred here).
    async fn apply_sts(&self, dest: &str, hosts: Vec<mx::Host>, batch: &Batch) -> Option<Route> {
        let plain = |hosts, sts| Route {
            hosts,
            tls: self.tls.clone(),
            sts,
            reporting: None,
        };
        let Some(p) = self.sts.policy(self.mx.resolver(), dest).await else {
            return Some(plain(hosts, None));
        };
        let mode = p.policy.mode;
        Stats::add(&self.handle.stats.mta_sts, mode.as_str(), 1);
        let names = |hs: &[mx::Host]| {
            hs.iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (ok, off): (Vec<_>, Vec<_>) = hosts
            .iter()
            .cloned()
            .partition(|h| p.policy.allows(&h.name));
        match mode {
            mta_sts::Mode::None => return Some(plain(hosts, Some(p))),
            mta_sts::Mode::Testing => {
                if !off.is_empty() {
                    tracing::warn!(domain = %crate::log_safe::Escaped(dest), id = %p.id, hosts = %names(&off), "MTA-STS testing: these mail hosts are not in the policy (an enforce policy would skip them); delivering anyway");
                }
                tracing::info!(domain = %crate::log_safe::Escaped(dest), id = %p.id, mode = mode.as_str(), "MTA-STS: policy applied");
                let reporting = self
                    .testing
                    .as_ref()
                    .and_then(|v| client::reporting_connector(v).ok());
                return Some(match reporting {
                    Some((tls, r)) => Route {
                        hosts,
                        tls,
                        sts: Some(p),
                        reporting: Some(r),
                    },
                    None => plain(hosts, Some(p)),
                });
            }
            mta_sts::Mode::Enforce => {}
        }
        tracing::info!(domain = %crate::log_safe::Escaped(dest), id = %p.id, mode = mode.as_str(), hosts = %names(&ok), skipped = %names(&off), "MTA-STS: policy applied");
        if ok.is_empty() {
            let why = format!(
                "MTA-STS policy of {dest} (enforce, id {}): no mail host matches its mx patterns ({}); MX hosts: {}",
                p.id,
                crate::log_safe::Escaped(p.policy.mx.join(",")),
                names(&hosts)
            );
            tracing::warn!(domain = %crate::log_safe::Escaped(dest), error = %crate::log_safe::Escaped(&why), "MTA-STS: deferred");
            for (e, rcpts) in batch {
                let res = rcpts
                    .iter()
                    .map(|r| (r.clone(), Outcome::Temporary(why.clone())))
                    .collect();
                self.settle(e, res, None, "mta_sts").await;
            }
            return None;
        }
        Some(Route {
            hosts: ok,
            tls: self.verified.clone(),
            sts: Some(p),
            reporting: None,
        })
    }

    /// Make the results of one attempt durable, count them, and report
    /// failures for good to the local sender. `sent` is the host and the
    /// message bytes when they were read.
    async fn settle(
        &self,
        e: &Entry,
        results: Vec<(String, Outcome)>,
        sent: Option<(String, Vec<u8>)>,
        defer_reason: &'static str,
    ) {
        let now = unix_now();
        let expired = now.saturating_sub(e.queued)
            >= i64::try_from(self.cfg.queue.lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut durable = Vec::new();
        let mut failed = Vec::new();
        let mut temp_err = None;
        let stats = &self.handle.stats;
        for (rcpt, o) in results {
            match o {
                Outcome::Delivered(r) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    durable.push((rcpt, RcptStatus::Delivered, r));
                }
                Outcome::Permanent(why) => {
                    let reason = if defer_reason == "peer_4xx" {
                        "refused"
                    } else {
                        "no_mail_host"
                    };
                    Stats::add(&stats.failed, reason, 1);
                    tracing::warn!(id = %e.id, rcpt = %rcpt, error = %why, "queue: delivery failed for good");
                    failed.push(dsn::Failed {
                        rcpt: rcpt.clone(),
                        diagnostic: why.clone(),
                        remote_mta: sent.as_ref().map(|(h, _)| h.clone()),
                        expired: false,
                    });
                    durable.push((rcpt, RcptStatus::Failed, why));
                }
                Outcome::Temporary(why) if expired => {
                    Stats::add(&stats.failed, "expired", 1);
                    tracing::warn!(id = %e.id, rcpt = %rcpt, error = %why, "queue: gave up after the queue lifetime");
                    failed.push(dsn::Failed {
                        rcpt: rcpt.clone(),
                        diagnostic: why.clone(),
                        remote_mta: None,
                        expired: true,
                    });
                    durable.push((rcpt, RcptStatus::Failed, why));
                }
                Outcome::Temporary(why) => {
                    Stats::add(&stats.deferred, defer_reason, 1);
                    temp_err = Some(format!("{rcpt}: {why}"));
                }
            }
        }
        let retry = temp_err.map(|err| {
            let wait = backoff(self.cfg.queue.retry, self.cfg.queue.max_retry, e.attempts);
            let next = now.saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(i64::MAX));
            tracing::info!(id = %e.id, error = %err, retry_in = %humantime::format_duration(wait), "queue: delivery deferred");
            (next, err)
        });
        // The report goes in before the failure is recorded: a crash in
        // between repeats the report rather than losing it.
        if !failed.is_empty() {
            self.report(e, &failed, sent.map(|(_, m)| m)).await;
        }
        let q = self.handle.queue.clone();
        let id = e.id.clone();
        match tokio::task::spawn_blocking(move || q.record(&id, &durable, retry)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::error!(id = %e.id, error = %err, "queue: recording a delivery failed")
            }
            Err(err) => tracing::error!(id = %e.id, error = %err, "queue: record task failed"),
        }
    }

    /// A delivery report into the INBOX of the local sender of `e`.
    async fn report(&self, e: &Entry, failed: &[dsn::Failed], msg: Option<Vec<u8>>) {
        let msg = match msg {
            Some(m) => m,
            None => {
                let (q, id) = (self.handle.queue.clone(), e.id.clone());
                match tokio::task::spawn_blocking(move || q.message(&id)).await {
                    Ok(Ok(m)) => m,
                    _ => Vec::new(),
                }
            }
        };
        if !dsn::wants_dsn(&e.from, &msg) {
            return;
        }
        let (accounts, from) = (self.accounts.clone(), e.from.clone());
        let account = match tokio::task::spawn_blocking(move || accounts.account_for(&from)).await {
            Ok(Ok(Some(a))) => a,
            _ => {
                tracing::info!(id = %e.id, from = %e.from, "queue: no local account for the sender; no delivery report");
                return;
            }
        };
        let domain = domain_of(&e.from).to_ascii_lowercase();
        let dsn = dsn::build(
            dsn::Report {
                host: &self.cfg.hostname,
                domain: &domain,
                sender: &e.from,
                arrival: e.queued,
                now: unix_now(),
                token: &e.id,
            },
            failed,
            &msg,
        );
        let store = self.store.clone();
        let acct = account.clone();
        match tokio::task::spawn_blocking(move || store.deliver(&[acct], &dsn)).await {
            Ok(Ok(_)) => {
                tracing::info!(id = %e.id, account = %account, rcpts = failed.len(), "queue: delivery report stored for the sender")
            }
            Ok(Err(err)) => {
                tracing::error!(id = %e.id, error = %err, "queue: storing the delivery report failed")
            }
            Err(err) => tracing::error!(id = %e.id, error = %err, "queue: report task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (r, m) = (Duration::from_secs(300), Duration::from_secs(4000));
        assert_eq!(backoff(r, m, 0), Duration::from_secs(300));
        assert_eq!(backoff(r, m, 1), Duration::from_secs(600));
        assert_eq!(backoff(r, m, 3), Duration::from_secs(2400));
        assert_eq!(backoff(r, m, 4), m);
        assert_eq!(backoff(r, m, 40), m);
    }
}
