//! One client connection, as phases: `handshake` (upstream PROXY header,
//! throttle, passthrough peek, TLS), the identity and the `admission`
//! decision, the backend connect (one function for terminated and
//! passthrough routes), the `prelude` (PROXY header, XCLIENT), the relay,
//! and the one log line at close, whose reason is a `CloseReason`.
//!
//! Every wait on a peer has its own deadline: `timeouts.handshake` for TLS,
//! `timeouts.connect` for the backend, `timeouts.idle` for the relay. The
//! identity is derived here, after every handshake (full or resumed), from
//! the certificate rustls kept for the session and the registry in force now.
//!
//! The pipeline runs over any [`ClientIo`]: the accepted socket, or the
//! plaintext of a connection that opened an HTTP `CONNECT` tunnel on a
//! listener with `https_connect` (`connect`). A tunnel's inner connection
//! goes through the same phases as if it had arrived on the target
//! listener, with the real client address, the outer connection's
//! connection permit and per-address slot, and its own close line (`via`
//! names the outer connection); a CONNECT inside a tunnel is refused.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::admission::{self, AccountCheck, Facts, Refusal};
use super::backend::{self, BackendStream};
use super::client_io::{ClientIo, Tunnelled};
use super::close::{CloseReason, HandshakeFailure};
use super::connect::{self, Refused};
pub use super::handshake::passthrough_route;
use super::handshake::{self, Handshaken};
use super::prelude;
use super::relay::{self, End};
use super::tls_stream;
use super::Shared;
use crate::auth::{ClientKey, Identity};
use crate::config::{ConnectAuth, HttpsConnect, IdentityMode, Protocol};
use crate::log_safe::Escaped;
use crate::tls::client_hello::Hello;

/// The connection facts derived once after the handshake (DESIGN §7.5).
#[derive(Debug, Clone)]
pub struct Peer {
    pub id: String,
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub alpn: Option<Vec<u8>>,
    pub sni: Option<String>,
    pub tls_version: String,
    pub cipher: String,
    pub client_cert: bool,
    /// The TLS session was resumed (the certificate is the session's).
    pub resumed: bool,
    pub identity: Option<Arc<Identity>>,
}

pub use super::admission::choose_route;

struct CloseLog<'a> {
    id: &'a str,
    client: SocketAddr,
    listener: usize,
    started: Instant,
    sni: Option<String>,
    alpn: Option<String>,
    /// The route chosen (its name and backend are printed from the
    /// config, not copied into every connection).
    route: Option<&'a crate::config::Route>,
    account: Option<String>,
    key: Option<String>,
    up: u64,
    down: u64,
    /// Who carried the TLS records: `record13`, `rustls`, `-` (none relayed).
    records: &'static str,
    /// The outer connection's id, for a connection inside a CONNECT tunnel.
    via: Option<&'a str>,
}

impl CloseLog<'_> {
    fn emit(&self, reason: &CloseReason) {
        // SNI and ALPN came from the client: both are validated where they
        // are parsed (a DNS name, a value we offered), and escaped here all
        // the same. `reason` is a string field, which tracing escapes.
        let reason_code = reason.label();
        let reason = reason.to_string();
        let reason = reason.as_str();
        tracing::info!(
            id = %self.id,
            client = %self.client,
            listener = self.listener,
            sni = %Escaped(self.sni.as_deref().unwrap_or("-")),
            alpn = %Escaped(self.alpn.as_deref().unwrap_or("-")),
            route = %self.route.map_or("-", |r| r.name.as_str()),
            backend = %self.route.map_or_else(|| "-".to_string(), |r| r.backend.to_string()),
            account = %self.account.as_deref().unwrap_or("-"),
            key = %self.key.as_deref().unwrap_or("-"),
            bytes_up = self.up,
            bytes_down = self.down,
            duration_ms = self.started.elapsed().as_millis() as u64,
            records = self.records,
            via = %self.via.unwrap_or("-"),
            reason,
            reason_code = reason_code,
            "connection closed"
        );
    }
}

/// RAII gauge of open connections per route and ALPN. It keeps the gauge
/// (a shared handle), not its label strings, for the connection's life.
struct OpenMetric(prometheus_client::metrics::gauge::Gauge);
impl OpenMetric {
    fn new(m: &crate::metrics::Metrics, labels: &crate::metrics::RouteAlpn) -> Self {
        let g = m.connections_open.get_or_create(labels).clone();
        g.inc();
        Self(g)
    }
}
impl Drop for OpenMetric {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// RAII count of open connections.
struct OpenGuard<'a>(&'a Shared);
impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    listener: usize,
    tls_config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    client: SocketAddr,
    // Held for the connection's life: `limits.max_connections` and, when
    // known at accept, the client address's `limits.per_ip_connections` slot.
    (_permit, mut ip_slot): (OwnedSemaphorePermit, Option<super::per_ip::IpSlot>),
) {
    shared.stats.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(&shared);
    let id = shared.next_id();
    // Boxed: everything the handshake and the backend setup needed is
    // freed before the relay, so the task of a connection that stays open
    // for days holds only what relaying needs (docs/performance.md).
    // The relay state is boxed too, so that no copy of it stays in the
    // task's own state.
    let set_up = Box::pin(setup(
        &shared,
        &id,
        listener,
        tls_config,
        ClientIo::Tcp(tcp),
        client,
        &mut ip_slot,
        None,
    ))
    .await;
    match set_up {
        Setup::Relay(mut r) => r.relay(&shared).await,
        Setup::Tunnel(t) => Box::pin(run_tunnel(&shared, &id, *t, &mut ip_slot)).await,
        Setup::Ended => {}
    }
}

/// How `setup` ended.
enum Setup<'a> {
    Relay(Box<Relaying<'a>>),
    /// A CONNECT tunnel was opened: its inner connection comes next.
    Tunnel(Box<Tunnelling<'a>>),
    /// Closed here (the close line is logged).
    Ended,
}

/// An outer connection whose CONNECT was answered `200`.
struct Tunnelling<'a> {
    log: CloseLog<'a>,
    tls: tls_stream::TlsStream,
    /// The target listener.
    listener: usize,
    target: String,
}

/// Run a tunnel's inner connection through the pipeline as if it had
/// arrived on the target listener, then log the outer connection's close.
async fn run_tunnel(
    shared: &Shared,
    outer_id: &str,
    t: Tunnelling<'_>,
    ip_slot: &mut Option<super::per_ip::IpSlot>,
) {
    let Tunnelling {
        mut log,
        tls,
        listener,
        target,
    } = t;
    let (up, down) = (Arc::default(), Arc::default());
    let io = ClientIo::Tunnel(Box::new(Tunnelled {
        outer: tls,
        up: Arc::clone(&up),
        down: Arc::clone(&down),
    }));
    let inner_id = shared.next_id();
    tracing::info!(id = %outer_id, client = %log.client, tunnel = %inner_id, destination = %Escaped(&target), listener, "CONNECT tunnel opened");
    let Some(tls_config) = shared.tls.get(listener).cloned() else {
        log.emit(&CloseReason::TlsStateLost);
        return;
    };
    let inner = Box::pin(setup(
        shared,
        &inner_id,
        listener,
        tls_config,
        io,
        log.client,
        ip_slot,
        Some(outer_id),
    ))
    .await;
    if let Setup::Relay(mut r) = inner {
        r.relay(shared).await;
    }
    log.up = up.load(Ordering::Relaxed);
    log.down = down.load(Ordering::Relaxed);
    log.emit(&CloseReason::TunnelClosed { inner: inner_id });
}

/// What the relay phase of a connection holds.
struct Relaying<'a> {
    log: CloseLog<'a>,
    conn: Ready,
}

impl Relaying<'_> {
    async fn relay(&mut self, shared: &Shared) {
        let cfg = &shared.config;
        let c = &mut self.conn;
        let stop = stop_signal(shared, c.identity.as_deref());
        let turn = shared.drain.my_turn();
        let out = relay::relay_draining(&mut c.tls, &mut c.be, cfg.timeouts.idle, stop, turn).await;
        self.log.up = out.up;
        self.log.down = out.down;
        self.log.records = c.tls.record_layer();
        for (direction, n) in [("up", out.up), ("down", out.down)] {
            shared
                .metrics
                .bytes
                .get_or_create(&crate::metrics::BytesLabel {
                    route: cfg.routes[c.route].name.clone(),
                    direction,
                })
                .inc_by(n);
        }
        if !matches!(out.end, End::Done) {
            // Best effort: tell the client we are closing (close_notify).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), c.tls.shutdown()).await;
            let _ = be_shutdown(&mut c.be).await;
        }
        self.log.emit(&CloseReason::Relay(out.end));
    }
}

/// Everything up to the relay: upstream PROXY header, handshake, identity,
/// route, backend connect, PROXY header, XCLIENT; `via`: the outer
/// connection's id, inside a tunnel.
#[allow(clippy::too_many_arguments)]
async fn setup<'a>(
    shared: &'a Shared,
    id: &'a str,
    listener: usize,
    tls_config: Arc<rustls::ServerConfig>,
    io: ClientIo,
    client: SocketAddr,
    ip_slot: &mut Option<super::per_ip::IpSlot>,
    via: Option<&'a str>,
) -> Setup<'a> {
    let mut log = CloseLog {
        id,
        client,
        listener,
        started: Instant::now(),
        sni: None,
        alpn: None,
        route: None,
        account: None,
        key: None,
        up: 0,
        down: 0,
        records: "-",
        via,
    };
    match set_up(
        shared, id, listener, tls_config, io, client, ip_slot, &mut log,
    )
    .await
    {
        Ok(Next::Relay(conn)) => Setup::Relay(Box::new(Relaying { log, conn })),
        Ok(Next::Tunnel {
            tls,
            listener,
            target,
        }) => Setup::Tunnel(Box::new(Tunnelling {
            log,
            tls,
            listener,
            target,
        })),
        Err(why) => {
            closed_early(shared, &log, &why);
            Setup::Ended
        }
    }
}

/// What `set_up` leads to.
enum Next {
    Relay(Ready),
    /// `200` sent: the tunnel's inner connection arrives on `listener`.
    Tunnel {
        tls: tls_stream::TlsStream,
        listener: usize,
        target: String,
    },
}

/// Count what a connection that ended before the relay says about the
/// handshake, and log its close line.
fn closed_early(shared: &Shared, log: &CloseLog<'_>, why: &CloseReason) {
    if let Some(kind) = why.handshake_failure() {
        shared
            .metrics
            .handshake_failures
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: kind.label(),
            })
            .inc();
        if kind == HandshakeFailure::ClientCertificateRefused {
            shared.metrics.unknown_keys.inc();
        }
    }
    log.emit(why);
}

/// A connection ready to relay.
struct Ready {
    tls: tls_stream::TlsStream,
    be: BackendStream,
    route: usize,
    /// The pinned key's identity, for closing the connection when the
    /// registry revokes or changes it.
    identity: Option<Arc<Identity>>,
    /// Keeps the connection in the open-connections gauge.
    _open_metric: OpenMetric,
}

/// The phases of `setup`; `Err` says why the connection ended.
#[allow(clippy::too_many_arguments)]
async fn set_up<'a>(
    shared: &'a Shared,
    id: &'a str,
    listener: usize,
    tls_config: Arc<rustls::ServerConfig>,
    io: ClientIo,
    mut client: SocketAddr,
    ip_slot: &mut Option<super::per_ip::IpSlot>,
    log: &mut CloseLog<'a>,
) -> Result<Next, CloseReason> {
    let cfg = shared.config.clone();
    let l = &cfg.listeners[listener];
    // A listener bound to one address and port accepts only on it: no
    // getsockname call needed. A tunnel arrives at the target's address.
    let bound = SocketAddr::new(
        l.bind.ip(),
        shared.ports.get(listener).copied().unwrap_or(l.bind.port()),
    );
    let mut local = match io.tcp() {
        Some(tcp) if l.bind.ip().is_unspecified() || l.bind.port() == 0 => {
            tcp.local_addr().unwrap_or(bound)
        }
        _ => bound,
    };
    let tunnelled = io.is_tunnel();
    let tls = Box::pin(handshake::handshake(
        shared,
        id,
        l,
        tls_config,
        io,
        &mut client,
        &mut local,
        ip_slot,
    ))
    .await;
    log.client = client;
    let mut tls = match tls? {
        Handshaken::Tls(tls) => *tls,
        Handshaken::Passthrough { tcp, route, hello } => {
            return Err(Box::pin(passthrough(
                shared, tcp, client, local, route, hello, id, log,
            ))
            .await)
        }
    };

    let sni = tls.take_server_name();
    let Some(sc) = tls.conn() else {
        return Err(CloseReason::TlsStateLost);
    };
    if sc.alpn_protocol() == Some(crate::tls::certs::ACME_TLS_ALPN) {
        // A CA checked a tls-alpn-01 challenge: the handshake was the answer.
        let _ = tls.shutdown().await;
        log.sni = sni;
        log.alpn = Some("acme-tls/1".into());
        return Err(CloseReason::AcmeAnswered);
    }
    let (peer, key) = {
        let Some(sc) = tls.conn() else {
            return Err(CloseReason::TlsStateLost);
        };
        let certs = sc.peer_certificates();
        let key = match &shared.auth {
            Some(a) => a.identify(certs),
            None => ClientKey::Absent,
        };
        let peer = Peer {
            id: id.to_owned(),
            addr: client,
            local,
            alpn: sc.alpn_protocol().map(<[u8]>::to_vec),
            sni,
            tls_version: crate::tls::version_name(sc.protocol_version()),
            cipher: sc
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            client_cert: certs.is_some_and(|c| !c.is_empty()),
            resumed: sc.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            identity: match &key {
                ClientKey::Pinned(i) => Some(i.clone()),
                _ => None,
            },
        };
        (peer, key)
    };
    log.sni = peer.sni.clone();
    log.alpn = peer
        .alpn
        .as_ref()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    if let Some(i) = &peer.identity {
        log.account = Some(i.account.clone());
        log.key = Some(i.key_name.clone());
    }
    if let ClientKey::Unknown(fp) = &key {
        shared.metrics.unknown_keys.inc();
        log.key = Some(format!("unknown {fp}"));
        tracing::info!(id = %id, client = %client, fingerprint = %fp, "client presented a key that is not in the registry");
    }

    // The account lookup is a file read and parse: off the worker threads.
    let account = match (&peer.identity, &shared.accounts) {
        // The registry names accounts of the bundled backends: one removed
        // there must not keep working through a key left in the registry.
        (Some(i), Some(accounts)) => {
            let (accts, name) = (accounts.clone(), i.account.clone());
            // A connection with the key is a login of its account, for
            // chatmail's inactive-account deletion (a no-op otherwise).
            let lookup = move || {
                let found = accts.account_for(&name);
                if let Ok(Some(a)) = &found {
                    if let Err(e) = accts.record_login(a) {
                        tracing::warn!(account = %a, error = %e, "cannot record the last login");
                    }
                }
                found
            };
            match tokio::task::spawn_blocking(lookup).await {
                Ok(Ok(Some(_))) => AccountCheck::Exists,
                Ok(Ok(None)) => AccountCheck::Missing,
                Ok(Err(e)) => AccountCheck::Unreadable(e.to_string()),
                Err(e) => AccountCheck::Unreadable(format!("account lookup task failed: {e}")),
            }
        }
        _ => AccountCheck::NotChecked,
    };
    let facts = Facts {
        alpn: peer.alpn.as_deref(),
        sni: peer.sni.as_deref(),
    };
    let unknown_key = shared.auth.as_ref().map(|a| a.unknown_key());
    let ri = match admission::decide(&cfg, l, facts, &key, unknown_key, &account) {
        Ok(ri) => ri,
        Err(refusal) => {
            let mut _open_metric = None;
            match (&refusal, &peer.identity) {
                (Refusal::UnknownKey, _) => {
                    if let Some(a) = &shared.auth {
                        a.note_failure(client.ip());
                    }
                }
                (Refusal::AccountMissing, Some(i)) => {
                    tracing::warn!(id = %id, key = %i.key_name, account = %i.account, "pinned key refused: its account does not exist (removed or disabled); fix the registry or add the account");
                }
                (Refusal::AccountsUnreadable(e), Some(i)) => {
                    tracing::error!(id = %id, account = %i.account, error = %e, "cannot read the accounts; refusing the pinned key");
                }
                (Refusal::KeyRequired { route }, _) => {
                    // Routed (and counted) before it is refused.
                    log.route = Some(&shared.config.routes[*route]);
                    _open_metric = Some(count_routed(shared, *route, log.alpn.as_deref(), &peer));
                }
                _ => {}
            }
            let _ = tls.shutdown().await;
            return Err(refusal.into());
        }
    };
    let route = &cfg.routes[ri];
    log.route = Some(&shared.config.routes[ri]);
    if let (Some(hc), Protocol::Http) = (l.https_connect, route.protocol) {
        if matches!(peer.alpn.as_deref(), None | Some(b"http/1.1")) {
            if let Some(head) = Box::pin(sniff_connect(&mut tls)).await {
                let tunnel = Box::pin(open_tunnel(
                    shared, &mut tls, &head, hc, &peer, local, tunnelled,
                ))
                .await;
                return match tunnel {
                    Ok((listener, target)) => {
                        log.route = None;
                        Ok(Next::Tunnel {
                            tls,
                            listener,
                            target,
                        })
                    }
                    Err(why) => Err(why),
                };
            }
        }
    }
    let _open_metric = count_routed(shared, ri, log.alpn.as_deref(), &peer);

    if route.backend.is_builtin() {
        let account = shared.account_page.clone();
        let site = match (&route.backend, &shared.web) {
            (crate::config::Backend::BuiltinChatmail, Some(web)) => {
                crate::web::Site::chatmail(web.clone(), account)
                    .with_mx(shared.mail_mx.get().cloned())
            }
            _ => crate::web::Site::status(super::builtin::page(shared), account),
        };
        let client = crate::web::Client {
            id: id.to_owned(),
            addr: client,
        };
        let stop = shared.force_close.clone();
        let (up, down) = Box::pin(crate::web::serve(tls, site, client, stop)).await;
        log.up = up;
        log.down = down;
        return Err(CloseReason::BuiltinServed);
    }

    let mut be = match Box::pin(connect_backend(shared, id, ri)).await {
        Ok(b) => b,
        Err(e) => {
            if let Some(msg) = backend::unavailable_message(route.protocol, peer.alpn.as_deref()) {
                let _ = tokio::time::timeout(cfg.timeouts.connect, async {
                    let _ = tls.write_all(msg).await;
                    let _ = tls.shutdown().await;
                })
                .await;
            }
            return Err(CloseReason::BackendUnreachable(e));
        }
    };

    let header = prelude::proxy_header(route.proxy_protocol, client, local, || {
        let meta = shared
            .resolver
            .current()
            .pick(peer.sni.as_deref())
            .meta
            .clone();
        (
            prelude::conn_info(&peer, meta.sig_alg, meta.key_alg),
            shared.auth.as_ref().and_then(|a| a.identity_secret()),
        )
    });
    if let Err(why) = prelude::send_proxy_header(&mut be, header, cfg.timeouts.connect).await {
        let _ = tls.shutdown().await;
        return Err(why);
    }
    if route.identity == IdentityMode::Xclient {
        // Postfix learns the login and client address by XCLIENT; its fresh
        // greeting becomes the client's greeting (see `xclient`).
        Box::pin(prelude::xclient(
            &mut tls,
            &mut be,
            &peer,
            route,
            cfg.timeouts.connect,
        ))
        .await?;
    }

    Ok(Next::Relay(Ready {
        tls,
        be,
        route: ri,
        identity: peer.identity.clone(),
        _open_metric,
    }))
}

/// The first bytes of a web-route connection, if they start a CONNECT
/// request: its whole head (bounded by `http_head`); what follows the head
/// is put back. Anything else is put back whole, for the web route.
async fn sniff_connect(tls: &mut tls_stream::TlsStream) -> Option<Vec<u8>> {
    let mut first = [0u8; connect::PREFIX.len()];
    let mut n = 0;
    // Browsers may open a connection well before their request: past this,
    // the connection is the web route's as it stands.
    let _ = tokio::time::timeout(crate::http_head::READ_TIMEOUT, async {
        while n < first.len() && connect::PREFIX.starts_with(&first[..n]) {
            match tls.read(&mut first[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    tls.unread(&first[..n]);
    if first[..n] != *connect::PREFIX {
        return None;
    }
    let mut head = match crate::http_head::read_head(tls).await {
        Ok(h) => h,
        // Incomplete or too long: the parser says why.
        Err(_) => return Some(Vec::new()),
    };
    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
        tls.unread(&head[end + 4..]);
        head.truncate(end + 4);
    }
    Some(head)
}

/// Check a CONNECT request (target, credentials) and answer it: the target
/// listener and the target as sent once `200` is written, else the refusal
/// (answered and logged).
async fn open_tunnel(
    shared: &Shared,
    tls: &mut tls_stream::TlsStream,
    head: &[u8],
    hc: HttpsConnect,
    peer: &Peer,
    local: SocketAddr,
    tunnelled: bool,
) -> Result<(usize, String), CloseReason> {
    let parsed = connect::parse(head);
    let target = parsed
        .as_ref()
        .map_or_else(|_| connect::raw_target(head), |r| r.target.clone());
    let checked = match parsed {
        Err(e) => Err(e),
        Ok(_) if tunnelled => Err(Refused::Nested),
        Ok(req) => Box::pin(check_connect(shared, &req, hc, peer, local)).await,
    };
    let timeout = shared.config.timeouts.connect;
    match checked {
        Ok(listener) => {
            let sent = tokio::time::timeout(timeout, async {
                tls.write_all(connect::ESTABLISHED).await?;
                tls.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => Ok((listener, target)),
                _ => Err(CloseReason::GreetingNotWritten),
            }
        }
        Err(refused) => {
            tracing::warn!(
                id = %peer.id,
                client = %peer.addr,
                destination = %Escaped(&target),
                status = refused.status(),
                reason = %refused,
                "CONNECT refused"
            );
            let _ = tokio::time::timeout(timeout, async {
                let _ = tls.write_all(refused.reply()).await;
                let _ = tls.shutdown().await;
            })
            .await;
            Err(CloseReason::ConnectRefused(refused))
        }
    }
}

/// Whether `req` may open a tunnel: its credentials (per `auth`), then its
/// target (one of our names, on a port one of our listeners is bound to,
/// whose TLS we terminate).
async fn check_connect(
    shared: &Shared,
    req: &connect::Request,
    hc: HttpsConnect,
    peer: &Peer,
    local: SocketAddr,
) -> Result<usize, Refused> {
    match hc.auth {
        ConnectAuth::None => {}
        ConnectAuth::Key => {
            if peer.identity.is_none() {
                return Err(Refused::KeyRequired);
            }
        }
        ConnectAuth::Password => {
            let Some((user, password)) = &req.credentials else {
                return Err(Refused::Credentials);
            };
            let Some(logins) = &shared.logins else {
                return Err(Refused::Unavailable);
            };
            match logins.check(Some(peer.addr.ip()), user, password).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Refused::Credentials),
                Err(e) if e.is_limit() => return Err(Refused::Throttled),
                Err(e) => {
                    tracing::error!(id = %peer.id, error = %e, "CONNECT: password check failed");
                    return Err(Refused::Unavailable);
                }
            }
        }
    }
    let cfg = &shared.config;
    let names = own_names(shared);
    let bound: Vec<SocketAddr> = cfg
        .listeners
        .iter()
        .zip(&shared.ports)
        .map(|(l, &port)| SocketAddr::new(l.bind.ip(), port))
        .collect();
    let listener = connect::target_listener(req, &names, &bound, local).ok_or(Refused::Foreign)?;
    // Passthrough routes hand on raw TLS from a socket: not through a tunnel.
    if cfg.listener_has_passthrough(&cfg.listeners[listener]) {
        return Err(Refused::Foreign);
    }
    Ok(listener)
}

/// The names frontdoor answers for: its mail domains and host name, its
/// certificates' names, the SNI route names, the ACME domains (lower case).
fn own_names(shared: &Shared) -> Vec<String> {
    let cfg = &shared.config;
    let mut names: Vec<String> = Vec::new();
    if let Some(m) = &cfg.mail {
        names.extend(m.domains.iter().cloned());
        names.push(m.hostname.clone());
    }
    for c in shared.resolver.current().certs() {
        names.extend(c.meta.names.iter().cloned());
    }
    for l in &cfg.listeners {
        names.extend(l.sni_routes.keys().cloned());
    }
    if let Some(a) = &cfg.acme {
        names.extend(a.domains.iter().cloned());
    }
    for n in &mut names {
        n.make_ascii_lowercase();
    }
    names
}

/// Connect to route `ri`'s backend (terminated and passthrough routes
/// alike), timing it and counting failures.
async fn connect_backend(shared: &Shared, id: &str, ri: usize) -> std::io::Result<BackendStream> {
    let route = &shared.config.routes[ri];
    let label = crate::metrics::RouteLabel {
        route: route.name.clone(),
    };
    let t_connect = Instant::now();
    let connected = backend::connect(&route.backend, shared.config.timeouts.connect).await;
    shared
        .metrics
        .backend_connect
        .get_or_create(&label)
        .observe(t_connect.elapsed().as_secs_f64());
    if let Err(e) = &connected {
        shared.metrics.backend_failures.get_or_create(&label).inc();
        tracing::warn!(id = %id, route = %route.name, backend = %route.backend, error = %e, "backend unreachable");
    }
    connected
}

/// Count a connection routed to `ri`; the returned guard keeps it in the
/// open-connections gauge.
fn count_routed(shared: &Shared, ri: usize, alpn: Option<&str>, peer: &Peer) -> OpenMetric {
    let labels = crate::metrics::RouteAlpn {
        route: shared.config.routes[ri].name.clone(),
        alpn: alpn.unwrap_or("-").to_owned(),
    };
    shared
        .metrics
        .connections_total
        .get_or_create(&labels)
        .inc();
    let open = OpenMetric::new(&shared.metrics, &labels);
    if let Some(i) = &peer.identity {
        shared.metrics.authenticated(&i.account);
    }
    open
}

/// Relay the raw TLS stream (ClientHello still unread in the socket) to a
/// backend that terminates TLS itself.
#[allow(clippy::too_many_arguments)]
async fn passthrough<'a>(
    shared: &'a Shared,
    mut tcp: TcpStream,
    client: SocketAddr,
    local: SocketAddr,
    ri: usize,
    hello: Hello,
    id: &str,
    log: &mut CloseLog<'a>,
) -> CloseReason {
    let cfg = &shared.config;
    let route = &cfg.routes[ri];
    log.route = Some(route);
    log.sni = hello.sni.clone();
    log.alpn = Some("passthrough".into());
    let mut be = match connect_backend(shared, id, ri).await {
        Ok(b) => b,
        Err(e) => return CloseReason::BackendUnreachable(e),
    };
    let header = prelude::proxy_header(route.proxy_protocol, client, local, || {
        (
            prelude::passthrough_info(client, local, hello.sni.clone(), id),
            None,
        )
    });
    if let Err(why) = prelude::send_proxy_header(&mut be, header, cfg.timeouts.connect).await {
        return why;
    }
    let stop = async {
        shared.force_close.cancelled().await;
        "shutdown: drain grace period over"
    };
    let turn = shared.drain.my_turn();
    let out = relay::relay_draining(&mut tcp, &mut be, cfg.timeouts.idle, stop, turn).await;
    log.up = out.up;
    log.down = out.down;
    CloseReason::Relay(out.end)
}

async fn be_shutdown(be: &mut BackendStream) -> std::io::Result<()> {
    tokio::time::timeout(std::time::Duration::from_secs(1), be.shutdown())
        .await
        .unwrap_or(Ok(()))
}

/// Resolves when this connection must end early: shutdown grace over, or
/// (for an authenticated connection) its key left the registry or now
/// stands for another identity.
async fn stop_signal(shared: &Shared, identity: Option<&Identity>) -> &'static str {
    let revoked = async {
        match (&shared.auth, identity) {
            // Boxed: anonymous connections do not carry its state.
            (Some(a), Some(id)) => Box::pin(a.wait_changed(id)).await,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shared.force_close.cancelled() => "shutdown: drain grace period over",
        why = revoked => why,
    }
}
