//! The web sides frontdoor serves itself on a web route, over the
//! already-terminated TLS stream, with hyper (HTTP/1.1, keep-alive,
//! `Upgrade`): a chatmail relay's (`backend: "builtin:chatmail"`) and the
//! status page (`backend: "builtin:status"`, [`Site::status`]). Both offer
//! the account page under `/account` when `mail.account_page` is on
//! (`account`).
//!
//! What the chatmail side answers, in this order (the paths are chatmail's):
//! - `POST /new`, `POST /cgi-bin/newemail.py`: fresh credentials as JSON
//!   (`newemail`), limited per client address (`ratelimit`); `403` when
//!   `new_accounts` is off; a browser's `GET` is sent on to
//!   `dcaccount:https://<domain>/new` with `301`, as chatmail's nginx does;
//! - `/.well-known/autoconfig/mail/config-v1.1.xml`, `/mail/config-v1.1.xml`:
//!   Thunderbird autoconfig listing the ports served (`autoconfig`);
//! - `/.well-known/mta-sts.txt`: the MTA-STS policy (on every host name,
//!   `mta-sts.<domain>` included, as chatmail's nginx serves it);
//! - `POST /mxdeliv`: delivery from other relays over HTTPS, through the
//!   bundled MX of this process (`mxdeliv`);
//! - `mail.chatmail.paths` prefixes: proxied to their backends (`proxy`);
//! - files from `www_dir` (`files`); `/` without an `index.html` there is
//!   the relay's page with its invite QR code (`status`).
//!
//! Invariants: a request head is at most [`MAX_HEAD`] bytes and must arrive
//! within [`HEAD_TIMEOUT`] (also the keep-alive idle limit); bad input gets
//! an HTTP error, never a panic; every request is one log line, the path
//! escaped. Everything a page holds is made once at start ([`Web::new`]).

pub mod account;
pub mod autoconfig;
pub mod files;
pub mod markup;
pub mod mxdeliv;
pub mod newemail;
pub mod proxy;
pub mod ratelimit;
pub mod status;
pub mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, Config};
use crate::log_safe::Escaped;
use crate::mail::chatmail::ChatmailConfig;

/// Most bytes of a request head (hyper's smallest read buffer is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a request head may take, and how long a kept-alive connection
/// may sit idle before its next one.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, hyper::Error>;

/// The relay's web side, made once at start.
pub struct Web {
    domain: String,
    chatmail: ChatmailConfig,
    autoconfig: String,
    mta_sts: String,
    page: String,
    /// `https_connect.auth: password` on the port the page names: each
    /// page gets fresh proxy credentials (`status`).
    proxy_mint: Option<u16>,
    csp: String,
    limiter: ratelimit::NewAccountLimiter,
    paths: Vec<proxy::PathBackend>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// This process runs an inbound MX (`mail.inbound`): before it has
    /// started, `/mxdeliv` is "try again later", not "no such path".
    mx_expected: bool,
}

/// What one connection is served: a chatmail relay's web side or the
/// status page, and the account page beside either.
#[derive(Clone)]
pub struct Site {
    kind: SiteKind,
    account: Option<Arc<account::AccountPage>>,
    /// The bundled MX of this process, for `POST /mxdeliv` (`mxdeliv`).
    mx: Option<Arc<crate::mail::smtp::SmtpContext>>,
}

#[derive(Clone)]
enum SiteKind {
    Chatmail(Arc<Web>),
    /// The status page's HTML, made when the connection was accepted.
    Status(Arc<str>),
}

impl Site {
    /// The chatmail relay's web side.
    pub fn chatmail(web: Arc<Web>, account: Option<Arc<account::AccountPage>>) -> Self {
        Self {
            kind: SiteKind::Chatmail(web),
            account,
            mx: None,
        }
    }

    /// With the bundled MX that `POST /mxdeliv` delivers through.
    pub fn with_mx(mut self, mx: Option<Arc<crate::mail::smtp::SmtpContext>>) -> Self {
        self.mx = mx;
        self
    }

    /// The status page (`page` is its HTML at `/`).
    pub fn status(page: String, account: Option<Arc<account::AccountPage>>) -> Self {
        Self {
            kind: SiteKind::Status(page.into()),
            account,
            mx: None,
        }
    }
}

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct Client {
    /// The connection id of the front door's log.
    pub id: String,
    /// The real client address (an upstream PROXY header already applied).
    pub addr: SocketAddr,
}

impl Web {
    /// The web side for `cfg` (`None` without `mail.chatmail`); `bound` are
    /// the listeners' actual ports, in listener order.
    pub fn new(cfg: &Config, bound: &[u16]) -> Option<Self> {
        let mail = cfg.mail.as_ref()?;
        let mut chatmail = mail.chatmail.clone()?;
        if let Some(d) = &chatmail.www_dir {
            if !d.is_dir() {
                tracing::error!(www_dir = %d.display(), "mail.chatmail.www_dir is not a directory: no static files are served");
                chatmail.www_dir = None;
            }
        }
        let domain = mail.domains.first()?.clone();
        let ports = autoconfig::served_ports(cfg, bound);
        let mut paths = Vec::new();
        for p in &chatmail.paths {
            match Backend::parse(&p.backend) {
                Ok(b) if !b.is_builtin() => paths.push(proxy::PathBackend {
                    prefix: p.prefix.clone(),
                    backend: b,
                }),
                Ok(b) => {
                    tracing::error!(prefix = %p.prefix, backend = %b, "path route backend must be host:port or unix:/path; route ignored")
                }
                Err(e) => {
                    tracing::error!(prefix = %p.prefix, error = %e, "path route backend refused; route ignored")
                }
            }
        }
        // The first listener with a CONNECT entry, on the port it is bound to.
        let entry = cfg
            .listeners
            .iter()
            .zip(bound.iter().copied().chain(std::iter::repeat(0)))
            .find_map(|(l, port)| l.https_connect.map(|h| (h.auth, port)));
        let (static_proxy, proxy_mint) = match entry {
            Some((crate::config::ConnectAuth::Password, port)) if chatmail.new_accounts => {
                (None, Some(port))
            }
            Some((crate::config::ConnectAuth::None, port)) => (
                Some(crate::mail::chatmail::uri::proxy_url(&domain, port, None)),
                None,
            ),
            _ => (None, None),
        };
        Some(Self {
            autoconfig: autoconfig::xml(&domain, &ports),
            mta_sts: autoconfig::mta_sts(&domain),
            page: status::page(&domain, chatmail.new_accounts, static_proxy.as_deref()),
            proxy_mint,
            csp: status::csp(),
            limiter: ratelimit::NewAccountLimiter::new(chatmail.new_account_rate_per_minute),
            domain,
            chatmail,
            paths,
            connect_timeout: cfg.timeouts.connect,
            idle_timeout: cfg.timeouts.idle,
            mx_expected: mail.inbound.is_some(),
        })
    }

    /// The autoconfig XML served.
    pub fn autoconfig_xml(&self) -> &str {
        &self.autoconfig
    }
}

/// Byte counters around the client stream (for the connection's log line).
struct Counting<S> {
    inner: S,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.up.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve HTTP/1.1 on `io` until the client is done, an upgraded request's
/// relay ends, or `stop` fires; returns (bytes read, bytes written).
pub async fn serve<S>(io: S, site: Site, client: Client, stop: CancellationToken) -> (u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let io = Counting {
        inner: io,
        up: up.clone(),
        down: down.clone(),
    };
    let upgrade: Arc<Mutex<Option<proxy::Upgrade>>> = Arc::new(Mutex::new(None));
    let svc = {
        let (site, client, upgrade) = (site.clone(), client.clone(), upgrade.clone());
        hyper::service::service_fn(move |req| {
            let (site, client, upgrade) = (site.clone(), client.clone(), upgrade.clone());
            async move { Ok::<_, Infallible>(handle(req, &site, &client, &upgrade).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let ended = tokio::select! {
        r = conn => r,
        _ = stop.cancelled() => return (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed)),
    };
    if let Err(e) = ended {
        tracing::debug!(id = %client.id, error = %Escaped(&e), "web connection ended with an error");
    }
    let pending = match upgrade.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let (Some(u), SiteKind::Chatmail(web)) = (pending, &site.kind) {
        relay_upgraded(u, web, &client, stop).await;
    }
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

/// Relay an upgraded request (a WebSocket, iroh's relay protocol) between
/// client and backend until either ends or stays idle too long.
async fn relay_upgraded(u: proxy::Upgrade, web: &Web, client: &Client, stop: CancellationToken) {
    let both = tokio::time::timeout(web.connect_timeout, async {
        let c = u.client.await?;
        let b = u.backend.await?;
        Ok::<_, hyper::Error>((c, b))
    })
    .await;
    let (c, b) = match both {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            tracing::info!(id = %client.id, error = %e, "upgrade did not complete");
            return;
        }
        Err(_) => {
            tracing::info!(id = %client.id, "upgrade did not complete in time");
            return;
        }
    };
    let end = tunnel::run(TokioIo::new(c), TokioIo::new(b), web.idle_timeout, stop).await;
    tracing::info!(
        id = %client.id,
        client = %client.addr,
        protocol = %Escaped(&u.protocol),
        end = %end,
        "upgraded request relayed"
    );
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A response with the headers every answer carries.
fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

/// A refusal as JSON: `reason` is the field Delta Chat core reads and
/// shows (`CreateAccountErrorResponse` in its `src/qr.rs`).
fn json_error(status: StatusCode, msg: &str) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::json!({ "reason": msg }).to_string(),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Answer one request and log it.
async fn handle(
    req: Request<Incoming>,
    site: &Site,
    client: &Client,
    upgrade: &Mutex<Option<proxy::Upgrade>>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let (resp, what) = match (&site.account, &site.kind) {
        (Some(a), _) if account::serves(&path) => a.handle(req, client).await,
        (_, SiteKind::Chatmail(web)) => route(req, web, site.mx.as_ref(), client, upgrade).await,
        (_, SiteKind::Status(page)) => status_route(&req, page),
    };
    tracing::info!(
        id = %client.id,
        client = %client.addr,
        method = %Escaped(method.as_str()),
        path = %Escaped(&path),
        status = resp.status().as_u16(),
        served = what,
        duration_ms = started.elapsed().as_millis() as u64,
        "web request"
    );
    resp
}

async fn route(
    req: Request<Incoming>,
    web: &Web,
    mx: Option<&Arc<crate::mail::smtp::SmtpContext>>,
    client: &Client,
    upgrade: &Mutex<Option<proxy::Upgrade>>,
) -> (Response<Body>, &'static str) {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    match path {
        "/new" | "/cgi-bin/newemail.py" => {
            let r = match *req.method() {
                Method::POST => new_account(web, client),
                Method::GET | Method::HEAD => {
                    // Delta Chat core does not follow redirects: only a
                    // browser comes here, and is sent on to the app.
                    let mut r = text(StatusCode::MOVED_PERMANENTLY, "open this in Delta Chat\n");
                    match HeaderValue::from_str(&status::invite_new(&web.domain)) {
                        Ok(v) => {
                            r.headers_mut().insert(header::LOCATION, v);
                            r
                        }
                        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad domain\n"),
                    }
                }
                _ => method_not_allowed("GET, HEAD, POST"),
            };
            return (r, "new");
        }
        "/.well-known/autoconfig/mail/config-v1.1.xml" | "/mail/config-v1.1.xml" => {
            let r = if get {
                respond(
                    StatusCode::OK,
                    "application/xml; charset=utf-8",
                    web.autoconfig.clone(),
                )
            } else {
                method_not_allowed("GET, HEAD")
            };
            return (r, "autoconfig");
        }
        "/.well-known/mta-sts.txt" => {
            let r = if get {
                respond(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    web.mta_sts.clone(),
                )
            } else {
                method_not_allowed("GET, HEAD")
            };
            return (r, "mta-sts");
        }
        "/mxdeliv" if mx.is_some() || web.mx_expected => {
            let r = match (*req.method() == Method::POST, mx) {
                (true, Some(mx)) => {
                    let (status, body) = mxdeliv::handle(req, mx, client.addr).await;
                    respond(status, "text/plain; charset=utf-8", body + "\n")
                }
                (true, None) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "421 4.3.2 the relay is starting, try again later\n".to_owned(),
                ),
                _ => method_not_allowed("POST"),
            };
            return (r, "mxdeliv");
        }
        _ => {}
    }
    if let Some(p) = web.paths.iter().find(|p| p.matches(path)) {
        let mut up = None;
        let r = match proxy::forward(req, &p.backend, client.addr, web.connect_timeout, &mut up)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(id = %client.id, prefix = %p.prefix, backend = %p.backend, error = %e, "path route backend failed");
                let s = e.status();
                text(s, "backend unavailable\n")
            }
        };
        if up.is_some() {
            match upgrade.lock() {
                Ok(mut g) => *g = up,
                Err(poisoned) => *poisoned.into_inner() = up,
            }
        }
        return (r, "proxy");
    }
    if !get {
        return (method_not_allowed("GET, HEAD"), "none");
    }
    if let Some(root) = &web.chatmail.www_dir {
        let root = root.clone();
        let p = path.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let file = files::resolve(&root, &p)?;
            let body =
                std::fs::read(&file).map_err(|e| files::FileError::Refused(e.to_string()))?;
            Ok::<_, files::FileError>((files::content_type(&file), body))
        })
        .await;
        match found {
            Ok(Ok((ctype, body))) => {
                let mut r = respond(StatusCode::OK, ctype, body);
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                return (r, "file");
            }
            Ok(Err(files::FileError::BadPath)) => {
                return (text(StatusCode::BAD_REQUEST, "bad path\n"), "file");
            }
            Ok(Err(files::FileError::NotFound)) => {}
            Ok(Err(files::FileError::Refused(why))) => {
                tracing::warn!(id = %client.id, error = %why, "static file not served");
                return (text(StatusCode::FORBIDDEN, "not served\n"), "file");
            }
            Err(e) => {
                tracing::error!(id = %client.id, error = %e, "static file task failed");
                return (
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
                    "file",
                );
            }
        }
    }
    if path == "/" {
        let page = match web.proxy_mint {
            Some(port) => status::page(
                &web.domain,
                web.chatmail.new_accounts,
                proxy_credentials(web, port).as_deref(),
            ),
            None => web.page.clone(),
        };
        let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", page);
        if let Ok(v) = HeaderValue::from_str(&web.csp) {
            r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
        return (r, "status");
    }
    (text(StatusCode::NOT_FOUND, "not found\n"), "none")
}

/// The status page's answers: the page at `/`, nothing else.
fn status_route(req: &Request<Incoming>, page: &Arc<str>) -> (Response<Body>, &'static str) {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return (method_not_allowed("GET, HEAD"), "none");
    }
    if req.uri().path() != "/" {
        return (text(StatusCode::NOT_FOUND, "not found\n"), "none");
    }
    (
        respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::copy_from_slice(page.as_bytes()),
        ),
        "status",
    )
}

/// A proxy URL with fresh credentials (their account is made at its first
/// login, as for `/new`); `None` without random bytes.
fn proxy_credentials(web: &Web, port: u16) -> Option<String> {
    let c = &web.chatmail;
    let creds = newemail::mint(
        &web.domain,
        c.username_max_length,
        c.password_min_length.saturating_add(3),
        &mut newemail::os_random,
    )
    .ok()?;
    Some(crate::mail::chatmail::uri::proxy_url(
        &web.domain,
        port,
        Some((&creds.email, &creds.password)),
    ))
}

/// `POST /new`: newemail.py's answer, or why not.
fn new_account(web: &Web, client: &Client) -> Response<Body> {
    let c = &web.chatmail;
    if !c.new_accounts {
        return json_error(
            StatusCode::FORBIDDEN,
            "this relay does not accept new accounts",
        );
    }
    if !web.limiter.allow(client.addr.ip(), Instant::now()) {
        tracing::info!(id = %client.id, client = %client.addr, rate_per_minute = c.new_account_rate_per_minute, "new account refused: address over its rate");
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many new accounts from your address (at most {} a minute); try again later",
                c.new_account_rate_per_minute
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return r;
    }
    match newemail::mint(
        &web.domain,
        c.username_max_length,
        c.password_min_length.saturating_add(3),
        &mut newemail::os_random,
    ) {
        Ok(creds) => {
            tracing::info!(id = %client.id, client = %client.addr, email = %creds.email, "new account credentials issued");
            match serde_json::to_string(&creds) {
                Ok(body) => respond(StatusCode::OK, "application/json", body),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode credentials");
                    json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot mint credentials");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: { alpn: [imap], backend: \"127.0.0.1:1143\" }\n  web: { alpn: [\"http/1.1\"], backend: \"builtin:chatmail\" }\nmail:\n  domains: [chat.example.org]\n  data_dir: /tmp/x\n";

    #[test]
    fn path_backends_are_checked_at_load() {
        let bad = format!("{BASE}  chatmail: {{ paths: [{{ prefix: /relay, backend: \"builtin:status\" }}, {{ prefix: /ping, backend: \"nohost\" }}] }}\n");
        let e = Config::parse(Path::new("/tmp/f.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mail.chatmail.paths[0].backend: needs an HTTP backend"),
            "{e}"
        );
        assert!(e.contains("mail.chatmail.paths[1].backend"), "{e}");
    }

    #[test]
    fn account_page_needs_a_registry_and_a_builtin_route() {
        let no_registry = format!("{BASE}  account_page: {{}}\n");
        let e = Config::parse(Path::new("/tmp/f.yaml"), &no_registry)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mail.account_page: the account page edits the key registry"),
            "{e}"
        );
        let no_route = "listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n  imap: { alpn: [imap], backend: \"127.0.0.1:1143\" }\nclient_auth: { registry: /tmp/k.yaml }\nmail:\n  domains: [example.org]\n  data_dir: /tmp/x\n  account_page: { max_keys_per_account: 0, session_lifetime: 5s }\n";
        let e = Config::parse(Path::new("/tmp/f.yaml"), no_route)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mail.account_page: the account page is served on a web route"),
            "{e}"
        );
        assert!(
            e.contains("max_keys_per_account: must be at least 1"),
            "{e}"
        );
        assert!(e.contains("session_lifetime: must be at least 1m"), "{e}");
        let off = format!("{BASE}  chatmail: {{}}\n  account_page: {{ enabled: false }}\n");
        let cfg = Config::parse(Path::new("/tmp/f.yaml"), &off).unwrap();
        assert!(cfg.mail.unwrap().account_page.is_none());
    }

    #[test]
    fn web_side_is_made_from_the_config() {
        let ok = format!(
            "{BASE}  chatmail: {{ paths: [{{ prefix: /relay, backend: \"127.0.0.1:3340\" }}] }}\n"
        );
        let cfg = Config::parse(Path::new("/tmp/f.yaml"), &ok).unwrap();
        let web = Web::new(&cfg, &[8443]).unwrap();
        assert!(web.autoconfig_xml().contains("<port>8443</port>"));
        assert!(!web.autoconfig_xml().contains("outgoingServer"));
        assert_eq!(web.paths.len(), 1);
        assert!(web.paths[0].matches("/relay"));
    }
}
