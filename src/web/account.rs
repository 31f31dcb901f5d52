//! The account page (`/account` on the web route, `mail.account_page`):
//! users log in with their mail password and manage their own device keys
//! in the pinned-key registry, as mox's account web interface does.
//!
//! What it owns:
//! - login through the same throttled password checks as IMAP and SMTP
//!   ([`Logins::check_existing`]: the same per-address and per-account
//!   tables, no account creation), then a server-side session with a fixed
//!   lifetime, named by a random cookie (`Secure; HttpOnly;
//!   SameSite=Strict`, path `/account`);
//! - a CSRF token on every form, checked on every POST (the login form's
//!   against a pre-login cookie, the others against the session's token);
//! - the page: the account's keys, forms to add a certificate or public
//!   key (PEM or DER, a file or pasted text), to have a key generated (the
//!   answer is a `.p12` under the user's password; only the public key is
//!   registered, the private key is dropped with the answer), to remove a
//!   key and to switch its IMAP PREAUTH; and the openssl commands that do
//!   the same by hand;
//! - the edits, through the registry's locked in-place edits
//!   (`registry::edit`), tagged `added_by: self` and `added_at:`, limited to
//!   the session's account and its addresses, to `max_keys_per_account` keys
//!   per account and `changes_per_hour` changes per client address. The
//!   running registry reloads as after any edit: a removed key's open
//!   connections close.
//!
//! Invariants: every answer carries `Cache-Control: no-store` and the
//! page's strict Content-Security-Policy (no script at all; the page's one
//! style sheet by hash); everything from a user or a certificate is
//! escaped (`markup::escape`); a request body is at most [`MAX_BODY`]
//! bytes; at most [`MAX_SESSIONS`] sessions are kept (the oldest go
//! first); an account with the `noAccountPage` file in its directory
//! (`<data_dir>/mailboxes/<account>/`) cannot log in here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::markup::escape;
use super::{full, Body, Client};
use crate::mail::accounts::Accounts;
use crate::mail::config::AccountPageConfig;
use crate::mail::login::Logins;
use crate::registry::{self, EditError, Fingerprint, KeyEntry, Registry, ADDED_BY_SELF};
use crate::throttle::{AddrKey, FailureTable};

/// Largest request body (a form with a certificate).
pub const MAX_BODY: usize = 64 * 1024;
/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;
/// The per-account switch file that turns the page off for that account.
pub const NO_ACCOUNT_PAGE: &str = "noAccountPage";
/// Longest device name.
const MAX_DEVICE: usize = 40;
const SESSION_COOKIE: &str = "fd_account";
const LOGIN_COOKIE: &str = "fd_login";
/// Remembered client addresses for the change rate.
const RATE_TABLE: usize = 16_384;

/// The page's only style sheet, allowed by its hash.
const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:1.5em auto;padding:0 1em;line-height:1.4}table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}code{word-break:break-all}pre{background:#f4f4f4;padding:.6em;overflow-x:auto}form.inline{display:inline}fieldset{margin:1em 0}label{display:block;margin:.3em 0}.notice{background:#e8f4e8;padding:.5em}.error{background:#f8e0e0;padding:.5em}";

/// Why a request was refused; picks the status shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("please log in first")]
    NoSession,
    #[error("the form is out of date (its token does not match); reload the page and try again")]
    BadCsrf,
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooMany(String),
    #[error("internal error; the server log has the details")]
    Server,
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::NoSession | PageError::BadCsrf | PageError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            PageError::Client(_) => StatusCode::BAD_REQUEST,
            PageError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Server => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

struct Session {
    account: String,
    csrf: String,
    expires: Instant,
    created: Instant,
    /// Shown once on the next page (the outcome of the last change).
    notice: Option<String>,
}

/// The account page of one process.
pub struct AccountPage {
    cfg: AccountPageConfig,
    registry: PathBuf,
    accounts: Accounts,
    data_dir: PathBuf,
    logins: Arc<Logins>,
    sessions: Mutex<HashMap<String, Session>>,
    changes: Mutex<FailureTable<AddrKey>>,
    csp: String,
}

impl std::fmt::Debug for AccountPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountPage")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Does `path` belong to the account page?
pub fn serves(path: &str) -> bool {
    path == "/account" || path.starts_with("/account/")
}

fn random_token() -> Result<String, PageError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a session token");
        PageError::Server
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request.
fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    for v in req.headers().get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// A submitted form: first value of each field.
#[derive(Debug, Default)]
struct Form(HashMap<String, Vec<u8>>);

impl Form {
    fn text(&self, k: &str) -> String {
        self.0
            .get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .unwrap_or_default()
    }
    fn bytes(&self, k: &str) -> &[u8] {
        self.0.get(k).map_or(&[], Vec::as_slice)
    }
    fn checked(&self, k: &str) -> bool {
        !self.text(k).is_empty()
    }
}

async fn read_form(req: Request<Incoming>) -> Result<Form, PageError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| PageError::Client(format!("the form is larger than {MAX_BODY} bytes")))?
        .to_bytes();
    let mut form = Form::default();
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/x-www-form-urlencoded" {
        for (k, v) in form_urlencoded::parse(&body) {
            form.0
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned().into_bytes());
        }
    } else if mime == "multipart/form-data" {
        let boundary = multer::parse_boundary(&ctype)
            .map_err(|e| PageError::Client(format!("bad multipart form: {e}")))?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        let bad = |e: multer::Error| PageError::Client(format!("bad multipart form: {e}"));
        while let Some(field) = mp.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_owned();
            let data = field.bytes().await.map_err(bad)?;
            form.0.entry(name).or_insert_with(|| data.to_vec());
        }
    } else {
        return Err(PageError::Client(
            "expected a form (urlencoded or multipart)".into(),
        ));
    }
    Ok(form)
}

/// A device name: 1-40 letters, digits, `.`, `_`, `-`, not starting with `.`.
fn device_name(s: &str) -> Result<String, PageError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_DEVICE
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(PageError::Client(format!(
            "device name {:?}: use 1 to {MAX_DEVICE} letters, digits, '.', '_' or '-'",
            s.chars().take(60).collect::<String>()
        )))
    }
}

/// The registry name of `device` of `account`: names are unique in the
/// whole registry, so each account has its own namespace.
fn entry_name(account: &str, device: &str) -> String {
    format!("{account}/{device}")
}

/// The device part of an entry's name (the whole name for an operator's).
fn device_of(e: &KeyEntry) -> &str {
    e.name
        .strip_prefix(e.account.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(&e.name)
}

/// The SPKI of an uploaded certificate or public key (PEM or DER); private
/// keys and bundles are refused, they must not leave the device.
fn uploaded_spki(raw: &[u8]) -> Result<Vec<u8>, PageError> {
    // Whitespace around PEM is noise; in DER it can be the signature's last
    // byte, so DER is read untrimmed.
    let bytes = raw.trim_ascii();
    if bytes.is_empty() {
        return Err(PageError::Client(
            "choose a certificate file or paste one".into(),
        ));
    }
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let private = looks_pem && bytes.windows(11).any(|w| w == b"PRIVATE KEY");
    if private {
        return Err(PageError::Client(
            "that is a private key: upload the certificate (or public key) only; the private key stays on your device".into(),
        ));
    }
    let spki = if looks_pem {
        registry::keys::public_key_from_bytes(bytes)
            .map_err(|e| PageError::Client(format!("not a certificate or public key: {e}")))?
    } else if let Ok(spki) = registry::spki_from_cert_der(raw) {
        spki
    } else if registry::KeyKind::of_spki(raw).is_ok() {
        raw.to_vec()
    } else {
        return Err(PageError::Client(
            "not a certificate or public key (PEM or DER)".into(),
        ));
    };
    registry::check_key_acceptable(&spki).map_err(|e| PageError::Client(e.to_string()))?;
    Ok(spki)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The edit's error in the user's words (no file paths).
fn edit_error(e: EditError) -> PageError {
    match e {
        EditError::DuplicateName { name, .. } => {
            PageError::Client(format!("you already have a key named {name:?}"))
        }
        EditError::DuplicateKey { .. } => {
            PageError::Client("this key is already registered".into())
        }
        EditError::NotFound(..) => PageError::Client("no such key of yours".into()),
        EditError::Refused(why) => PageError::Forbidden(why),
        e => {
            tracing::error!(error = %e, "account page: registry edit failed");
            PageError::Server
        }
    }
}

impl AccountPage {
    /// The page for `cfg`, editing the registry at `registry`.
    pub fn new(
        cfg: AccountPageConfig,
        registry: PathBuf,
        accounts: Accounts,
        data_dir: PathBuf,
        logins: Arc<Logins>,
    ) -> Self {
        let leak = Duration::from_secs(3600) / cfg.changes_per_hour.max(1);
        let hash =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        Self {
            cfg,
            registry,
            accounts,
            data_dir,
            logins,
            sessions: Mutex::new(HashMap::new()),
            changes: Mutex::new(FailureTable::new(RATE_TABLE, leak)),
            csp: format!(
                "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
            ),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The account and CSRF token of the request's session, if live.
    fn session(&self, req: &Request<Incoming>) -> Option<(String, String, String)> {
        let id = cookie(req, SESSION_COOKIE)?;
        self.session_at(id, Instant::now())
    }

    /// The session named `id` at `now`: (id, account, CSRF token); an
    /// expired one is dropped.
    fn session_at(&self, id: String, now: Instant) -> Option<(String, String, String)> {
        let mut s = self.sessions();
        match s.get(&id) {
            Some(x) if x.expires > now => Some((id, x.account.clone(), x.csrf.clone())),
            Some(_) => {
                s.remove(&id);
                None
            }
            None => None,
        }
    }

    fn take_notice(&self, id: &str) -> Option<String> {
        self.sessions().get_mut(id).and_then(|s| s.notice.take())
    }

    fn set_notice(&self, id: &str, n: String) {
        if let Some(s) = self.sessions().get_mut(id) {
            s.notice = Some(n);
        }
    }

    fn new_session(&self, account: &str) -> Result<String, PageError> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut s = self.sessions();
        s.retain(|_, x| x.expires > now);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, x)| x.created)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            id.clone(),
            Session {
                account: account.to_owned(),
                csrf,
                expires: now + self.cfg.session_lifetime,
                created: now,
                notice: None,
            },
        );
        Ok(id)
    }

    /// Count one change for `ip`, or refuse it past the hourly rate.
    fn allow_change(&self, ip: IpAddr) -> Result<(), PageError> {
        let key = AddrKey::from(ip);
        let now = Instant::now();
        let mut t = match self.changes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = self.cfg.changes_per_hour;
        if t.level(&key, now) >= n {
            tracing::info!(client = %key, changes_per_hour = n, "account page: change refused, address over its rate");
            return Err(PageError::TooMany(format!(
                "too many key changes from your address (at most {n} an hour); try again later"
            )));
        }
        t.add(&key, now, n);
        Ok(())
    }

    fn page_off_for(&self, account: &str) -> bool {
        crate::mail::chatmail::account_flags::account_dir(&self.data_dir, account)
            .is_some_and(|d| d.join(NO_ACCOUNT_PAGE).exists())
    }

    /// Answer one request under `/account`; the label for the log line.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: &Client,
    ) -> (Response<Body>, &'static str) {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if method == Method::GET || method == Method::HEAD {
            if path != "/account" && path != "/account/" {
                return (
                    self.html(StatusCode::NOT_FOUND, "not found".into(), &[]),
                    "account",
                );
            }
            return (self.show(&req).await, "account");
        }
        if method != Method::POST {
            let mut r = self.html(
                StatusCode::METHOD_NOT_ALLOWED,
                "<p>method not allowed</p>".into(),
                &[],
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            return (r, "account");
        }
        let action = path.trim_start_matches("/account/").to_owned();
        if action == "login" {
            return (self.login(req, client).await, "account-login");
        }
        let Some((id, account, csrf)) = self.session(&req) else {
            tracing::info!(id = %client.id, client = %client.addr, action = %crate::log_safe::Escaped(&action), "account page: change refused, no session");
            return (self.error(PageError::NoSession, None), "account-refused");
        };
        let form = match read_form(req).await {
            Ok(f) => f,
            Err(e) => return (self.error(e, Some(&(id, account, csrf))), "account-refused"),
        };
        if !same(&form.text("csrf"), &csrf) {
            tracing::info!(id = %client.id, client = %client.addr, account = %account, "account page: change refused, bad CSRF token");
            return (
                self.error(PageError::BadCsrf, Some(&(id, account, csrf))),
                "account-refused",
            );
        }
        if action == "logout" {
            self.sessions().remove(&id);
            let mut r = redirect("/account");
            set_cookie(&mut r, &format!("{SESSION_COOKIE}=; Path=/account; Max-Age=0; Secure; HttpOnly; SameSite=Strict"));
            tracing::info!(id = %client.id, account = %account, "account page: logged out");
            return (r, "account-logout");
        }
        if let Err(e) = self.allow_change(client.addr.ip()) {
            return (self.error(e, Some(&(id, account, csrf))), "account-refused");
        }
        let done = match action.as_str() {
            "add" => self.add(&account, &form).await,
            "generate" => match self.generate(&account, &form).await {
                Ok((name, p12, fp)) => {
                    tracing::info!(id = %client.id, client = %client.addr, account = %account, key = %name, fingerprint = %fp, "account page: key generated and pinned");
                    self.set_notice(
                        &id,
                        format!("Key {name:?} ({fp}) was generated and pinned; your browser saved it as {name}.p12."),
                    );
                    return (p12_download(&name, p12), "account-generate");
                }
                Err(e) => Err(e),
            },
            "remove" => self.remove(&account, &form).await,
            "preauth" => self.preauth(&account, &form).await,
            _ => Err(PageError::Client("unknown action".into())),
        };
        match done {
            Ok(notice) => {
                tracing::info!(id = %client.id, client = %client.addr, account = %account, action = %crate::log_safe::Escaped(&action), outcome = %crate::log_safe::Escaped(&notice), "account page: change made");
                self.set_notice(&id, notice);
                (redirect("/account"), "account-change")
            }
            Err(e) => {
                tracing::info!(id = %client.id, client = %client.addr, account = %account, action = %crate::log_safe::Escaped(&action), error = %crate::log_safe::Escaped(&e.to_string()), "account page: change refused");
                (self.error(e, Some(&(id, account, csrf))), "account-refused")
            }
        }
    }

    async fn login(&self, req: Request<Incoming>, client: &Client) -> Response<Body> {
        let pre = cookie(&req, LOGIN_COOKIE);
        let form = match read_form(req).await {
            Ok(f) => f,
            Err(e) => return self.error(e, None),
        };
        match pre {
            Some(p) if same(&p, &form.text("csrf")) => {}
            _ => {
                tracing::info!(id = %client.id, client = %client.addr, "account page: login refused, bad CSRF token");
                return self.error(PageError::BadCsrf, None);
            }
        }
        let user = form.text("user");
        let password = String::from_utf8_lossy(form.bytes("password")).into_owned();
        let checked = self
            .logins
            .check_existing(Some(client.addr.ip()), &user, &password)
            .await;
        match checked {
            Ok(Some(account)) => {
                if self.page_off_for(&account) {
                    tracing::info!(id = %client.id, account = %account, "account page: login refused, the page is off for this account");
                    return self.login_page(
                        StatusCode::FORBIDDEN,
                        Some(
                            "Managing keys here is turned off for this account; ask the operator.",
                        ),
                    );
                }
                let sid = match self.new_session(&account) {
                    Ok(s) => s,
                    Err(e) => return self.error(e, None),
                };
                tracing::info!(id = %client.id, client = %client.addr, account = %account, "account page: logged in");
                let mut r = redirect("/account");
                set_cookie(
                    &mut r,
                    &format!(
                        "{SESSION_COOKIE}={sid}; Path=/account; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
                        self.cfg.session_lifetime.as_secs()
                    ),
                );
                r
            }
            Ok(None) => {
                tracing::info!(id = %client.id, client = %client.addr, user = %crate::log_safe::Escaped(&user), "account page: login failed, wrong address or password");
                self.login_page(StatusCode::FORBIDDEN, Some("Wrong address or password."))
            }
            Err(e) if e.is_limit() => self.login_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed logins; try again later."),
            ),
            Err(e) => {
                tracing::error!(id = %client.id, error = %e, "account page: password check failed");
                self.error(PageError::Server, None)
            }
        }
    }

    /// The registry file as it stands (the page shows edits at once; the
    /// running server picks them up on its next reload).
    async fn registry_now(&self) -> Result<Registry, PageError> {
        let path = self.registry.clone();
        tokio::task::spawn_blocking(move || {
            if !path.exists() {
                return Ok(Registry::default());
            }
            Registry::load(&path)
        })
        .await
        .map_err(|_| PageError::Server)?
        .map_err(|p| {
            tracing::error!(problems = %p, "account page: cannot read the registry");
            PageError::Server
        })
    }

    fn addresses(&self, account: &str) -> Result<Vec<String>, PageError> {
        self.accounts.addresses(account).map_err(|e| {
            tracing::error!(error = %e, "account page: cannot read the accounts");
            PageError::Server
        })
    }

    /// The entry for `account`'s new key, its login checked.
    fn new_entry(
        &self,
        account: &str,
        form: &Form,
        fingerprint: Fingerprint,
    ) -> Result<KeyEntry, PageError> {
        let device = device_name(&form.text("name"))?;
        let login = form.text("login");
        let mine = self.addresses(account)?;
        let Some(login) = mine.iter().find(|a| a.eq_ignore_ascii_case(&login)) else {
            return Err(PageError::Forbidden(format!(
                "{:?} is not an address of your account",
                login.chars().take(80).collect::<String>()
            )));
        };
        Ok(KeyEntry {
            name: entry_name(account, &device),
            fingerprint,
            account: account.to_owned(),
            login: login.clone(),
            imap_preauth: form.checked("preauth"),
            added_by: Some(ADDED_BY_SELF.to_owned()),
            added_at: Some(now_rfc3339()),
        })
    }

    async fn pin(&self, account: &str, entry: KeyEntry) -> Result<(), PageError> {
        let path = self.registry.clone();
        let max = self.cfg.max_keys_per_account;
        let account = account.to_owned();
        tokio::task::spawn_blocking(move || {
            registry::add_entry_checked(&path, &entry, |reg| {
                let n = reg.entries().iter().filter(|e| e.account == account).count();
                if n >= max {
                    return Err(EditError::Refused(format!(
                        "your account has {n} keys, the most allowed here is {max}; remove one first"
                    )));
                }
                Ok(())
            })
        })
        .await
        .map_err(|_| PageError::Server)?
        .map_err(edit_error)
    }

    async fn add(&self, account: &str, form: &Form) -> Result<String, PageError> {
        let upload = if form.bytes("file").trim_ascii().is_empty() {
            form.bytes("pem")
        } else {
            form.bytes("file")
        };
        let spki = uploaded_spki(upload)?;
        let entry = self.new_entry(account, form, registry::fingerprint_spki(&spki))?;
        let (name, fp) = (entry.name.clone(), entry.fingerprint);
        self.pin(account, entry).await?;
        Ok(format!("Key {name:?} ({fp}) was pinned."))
    }

    async fn generate(
        &self,
        account: &str,
        form: &Form,
    ) -> Result<(String, Vec<u8>, Fingerprint), PageError> {
        let device = device_name(&form.text("name"))?;
        let password = String::from_utf8_lossy(form.bytes("p12_password")).into_owned();
        if password.chars().count() < 6 {
            return Err(PageError::Client(
                "pick a password of at least 6 characters for the .p12 file".into(),
            ));
        }
        if password != String::from_utf8_lossy(form.bytes("p12_password2")) {
            return Err(PageError::Client("the two passwords differ".into()));
        }
        let kind = match form.text("type").as_str() {
            "p256" | "" => crate::registry::generate::KeyType::P256,
            "ed25519" => crate::registry::generate::KeyType::Ed25519,
            "rsa" => crate::registry::generate::KeyType::Rsa,
            _ => return Err(PageError::Client("unknown key type".into())),
        };
        // Check the login before spending time on the key.
        self.new_entry(account, form, Fingerprint([0; 32]))?;
        let legacy = form.checked("legacy");
        let d = device.clone();
        let g = tokio::task::spawn_blocking(move || {
            crate::registry::generate::generate(&d, kind, &password, legacy)
        })
        .await
        .map_err(|_| PageError::Server)?
        .map_err(|e| {
            tracing::error!(error = %e, "account page: key generation failed");
            PageError::Server
        })?;
        let entry = self.new_entry(account, form, g.fingerprint)?;
        self.pin(account, entry).await?;
        // Only the public key was kept; the private key goes out in the
        // .p12 and is dropped with `g`.
        Ok((device, g.p12, g.fingerprint))
    }

    async fn remove(&self, account: &str, form: &Form) -> Result<String, PageError> {
        let device = device_name(&form.text("name"))?;
        let name = entry_name(account, &device);
        let path = self.registry.clone();
        let (acct, n) = (account.to_owned(), name.clone());
        let e = tokio::task::spawn_blocking(move || {
            registry::remove_entry_if(&path, &n, |e| e.account == acct && e.name == n)
        })
        .await
        .map_err(|_| PageError::Server)?
        .map_err(edit_error)?;
        Ok(format!(
            "Key {:?} ({}) was removed; its open connections close.",
            e.name, e.fingerprint
        ))
    }

    async fn preauth(&self, account: &str, form: &Form) -> Result<String, PageError> {
        let device = device_name(&form.text("name"))?;
        let on = form.text("preauth") == "on";
        let name = entry_name(account, &device);
        let path = self.registry.clone();
        let (acct, n) = (account.to_owned(), name.clone());
        tokio::task::spawn_blocking(move || {
            registry::set_preauth_if(&path, &n, on, |e| e.account == acct)
        })
        .await
        .map_err(|_| PageError::Server)?
        .map_err(edit_error)?;
        Ok(format!(
            "IMAP PREAUTH is now {} for {name:?}.",
            if on { "on" } else { "off" }
        ))
    }

    // ------------------------------------------------------------ pages

    fn html(&self, status: StatusCode, body: String, cookies: &[String]) -> Response<Body> {
        let doc = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Your device keys</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n"
        );
        let mut r = super::respond(status, "text/html; charset=utf-8", doc);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        for c in cookies {
            set_cookie(&mut r, c);
        }
        r
    }

    fn error(&self, e: PageError, session: Option<&(String, String, String)>) -> Response<Body> {
        let status = e.status();
        let msg = escape(&e.to_string());
        let back = match session {
            Some(_) => "<p><a href=\"/account\">Back to your keys</a></p>",
            None => "<p><a href=\"/account\">Log in</a></p>",
        };
        self.html(
            status,
            format!(
                "<h1>Your device keys</h1>\n<p class=\"error\" id=\"error\">{msg}</p>\n{back}\n"
            ),
            &[],
        )
    }

    fn login_page(&self, status: StatusCode, msg: Option<&str>) -> Response<Body> {
        let token = match random_token() {
            Ok(t) => t,
            Err(e) => return self.error(e, None),
        };
        let mut b = String::from("<h1>Your device keys</h1>\n<p>Log in with your mail address and password to see and manage the keys your devices log in with.</p>\n");
        if let Some(m) = msg {
            let _ = writeln!(b, "<p class=\"error\" id=\"error\">{}</p>", escape(m));
        }
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/account/login\" id=\"login\">\n<input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n<label>Address <input name=\"user\" type=\"email\" autocomplete=\"username\" required></label>\n<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n<button type=\"submit\">Log in</button>\n</form>\n"
        );
        self.html(
            status,
            b,
            &[format!(
                "{LOGIN_COOKIE}={token}; Path=/account; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
            )],
        )
    }

    async fn show(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some((id, account, csrf)) = self.session(req) else {
            return self.login_page(StatusCode::OK, None);
        };
        let notice = self.take_notice(&id);
        let reg = match self.registry_now().await {
            Ok(r) => r,
            Err(e) => return self.error(e, Some(&(id, account, csrf))),
        };
        let addrs = match self.addresses(&account) {
            Ok(a) => a,
            Err(e) => return self.error(e, Some(&(id, account, csrf))),
        };
        // `?device=NAME` fills the device name into the openssl commands.
        let device = req
            .uri()
            .query()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "device")
                    .map(|(_, v)| v.into_owned())
            })
            .and_then(|d| device_name(d.trim()).ok())
            .unwrap_or_else(|| "laptop".to_owned());
        let body = page_body(
            &account,
            &csrf,
            &reg,
            &addrs,
            notice.as_deref(),
            &self.cfg,
            &device,
        );
        self.html(StatusCode::OK, body, &[])
    }
}

fn set_cookie(r: &mut Response<Body>, c: &str) {
    if let Ok(v) = HeaderValue::from_str(c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = super::respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        "see /account\n",
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn p12_download(name: &str, p12: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(p12));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pkcs12"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The device name is letters, digits, '.', '_' and '-' only.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.p12\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `s` quoted for a POSIX shell when needed.
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The openssl commands that make a key, a minimal certificate and a
/// `.p12` for `device`, and print the fingerprint the page shows.
pub fn openssl_commands(device: &str) -> String {
    let d = sh(device);
    format!(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {d}.key\n\
         openssl req -x509 -new -key {d}.key -subj /CN={d} -days 36500 -out {d}.crt\n\
         openssl pkcs12 -export -inkey {d}.key -in {d}.crt -name {d} -out {d}.p12\n\
         openssl x509 -pubkey -noout -in {d}.crt | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64\n"
    )
}

fn page_body(
    account: &str,
    csrf: &str,
    reg: &Registry,
    addrs: &[String],
    notice: Option<&str>,
    cfg: &AccountPageConfig,
    device: &str,
) -> String {
    let a = escape(account);
    let csrf_field = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    );
    let mut b = format!(
        "<h1>Your device keys</h1>\n<form class=\"inline\" method=\"post\" action=\"/account/logout\">{csrf_field}<p>Logged in as <b id=\"account\">{a}</b> <button type=\"submit\" id=\"logout\">Log out</button></p></form>\n"
    );
    if let Some(n) = notice {
        let _ = writeln!(b, "<p class=\"notice\" id=\"notice\">{}</p>", escape(n));
    }
    let mine: Vec<&KeyEntry> = reg
        .entries()
        .iter()
        .filter(|e| e.account == account)
        .collect();
    let _ = writeln!(
        b,
        "<p>A device with one of these keys in its TLS client certificate logs in without a password. You have {} of at most {} keys.</p>",
        mine.len(),
        cfg.max_keys_per_account
    );
    b.push_str("<table id=\"keys\"><thead><tr><th>Device</th><th>Fingerprint</th><th>Login</th><th>IMAP PREAUTH</th><th>Added</th><th>Added by</th><th></th></tr></thead><tbody>\n");
    if mine.is_empty() {
        b.push_str("<tr><td colspan=\"7\">No keys yet.</td></tr>\n");
    }
    for e in &mine {
        let dev = device_of(e);
        let own = e.added_by.as_deref() == Some(ADDED_BY_SELF) || e.name != dev;
        let d = escape(dev);
        let flip = if e.imap_preauth { "off" } else { "on" };
        let actions = if own {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/account/preauth\">{csrf_field}<input type=\"hidden\" name=\"name\" value=\"{d}\"><input type=\"hidden\" name=\"preauth\" value=\"{flip}\"><button type=\"submit\">Turn PREAUTH {flip}</button></form> <form class=\"inline\" method=\"post\" action=\"/account/remove\">{csrf_field}<input type=\"hidden\" name=\"name\" value=\"{d}\"><button type=\"submit\" class=\"remove\">Remove</button></form>"
            )
        } else {
            "set by the operator".to_owned()
        };
        let _ = writeln!(
            b,
            "<tr data-name=\"{d}\"><td>{d}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{actions}</td></tr>",
            escape(&e.fingerprint.to_string()),
            escape(&e.login),
            if e.imap_preauth { "on" } else { "off" },
            escape(e.added_at.as_deref().unwrap_or("-")),
            escape(e.added_by.as_deref().map_or("the operator", |s| if s == ADDED_BY_SELF { "you" } else { s })),
        );
    }
    b.push_str("</tbody></table>\n");
    let mut options = String::new();
    for ad in addrs {
        let e = escape(ad);
        let _ = write!(options, "<option value=\"{e}\">{e}</option>");
    }
    let _ = write!(
        b,
        "<h2>Generate a key for a device</h2>\n<p>The server makes a key and a certificate and your browser downloads them as a <code>.p12</code> file, protected by the password you pick here; import it in your mail app. Only the public key is kept here.</p>\n<form method=\"post\" action=\"/account/generate\" id=\"generate\">{csrf_field}\n<label>Device name <input name=\"name\" required maxlength=\"{MAX_DEVICE}\" pattern=\"[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*\" placeholder=\"phone\"></label>\n<label>Login address <select name=\"login\">{options}</select></label>\n<label>Key type <select name=\"type\"><option value=\"p256\">ECDSA P-256 (most apps)</option><option value=\"ed25519\">Ed25519</option><option value=\"rsa\">RSA 2048</option></select></label>\n<label>Password for the .p12 file <input name=\"p12_password\" type=\"password\" autocomplete=\"new-password\" minlength=\"6\" required></label>\n<label>The same again <input name=\"p12_password2\" type=\"password\" autocomplete=\"new-password\" minlength=\"6\" required></label>\n<label><input type=\"checkbox\" name=\"preauth\" value=\"on\" checked> IMAP PREAUTH (turn off for apps that do not understand it)</label>\n<label><input type=\"checkbox\" name=\"legacy\" value=\"on\"> Legacy .p12 encryption (3DES, SHA-1) for old importers</label>\n<button type=\"submit\">Generate and download</button>\n</form>\n"
    );
    let _ = write!(
        b,
        "<h2>Add a certificate you made</h2>\n<p>A certificate or public key, PEM or DER: choose the file or paste it. Only its public key counts; never upload the private key.</p>\n<form method=\"post\" action=\"/account/add\" enctype=\"multipart/form-data\" id=\"add\">{csrf_field}\n<label>Device name <input name=\"name\" required maxlength=\"{MAX_DEVICE}\" placeholder=\"laptop\"></label>\n<label>Login address <select name=\"login\">{options}</select></label>\n<label>Certificate file <input type=\"file\" name=\"file\"></label>\n<label>or paste it <textarea name=\"pem\" rows=\"6\" cols=\"66\" placeholder=\"-----BEGIN CERTIFICATE-----\"></textarea></label>\n<label><input type=\"checkbox\" name=\"preauth\" value=\"on\" checked> IMAP PREAUTH</label>\n<button type=\"submit\">Add</button>\n</form>\n"
    );
    let login = addrs.first().map_or(account, String::as_str);
    let dev = escape(device);
    let _ = write!(
        b,
        "<h2>The same by hand with openssl</h2>\n<form method=\"get\" action=\"/account\" id=\"device\"><label>For a device named <input name=\"device\" value=\"{dev}\" maxlength=\"{MAX_DEVICE}\"> <button type=\"submit\">Show the commands</button></label></form>\n<p>A private key, a minimal self-signed certificate, the <code>.p12</code> for the mail app (openssl asks for its password) and the key's fingerprint as this page shows it. Then add <code>{dev}.crt</code> above as device <code>{dev}</code> with login <code>{}</code>.</p>\n<pre id=\"openssl\">{}</pre>\n<p>Mail apps log in with the <code>.p12</code> on this server's IMAP and SMTP ports, user <code>{}</code>, no password needed.</p>\n",
        escape(login),
        escape(&openssl_commands(device)),
        escape(login),
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert!(device_name("phone-2").is_ok());
        assert!(device_name("").is_err());
        assert!(device_name(".x").is_err());
        assert!(device_name("a/b").is_err());
        assert!(device_name("<script>").is_err());
        assert!(device_name(&"a".repeat(41)).is_err());
    }

    #[test]
    fn entry_names_and_devices() {
        let e = KeyEntry {
            name: entry_name("alice@example.org", "phone"),
            fingerprint: Fingerprint([1; 32]),
            account: "alice@example.org".into(),
            login: "alice@example.org".into(),
            imap_preauth: true,
            added_by: Some(ADDED_BY_SELF.into()),
            added_at: None,
        };
        assert_eq!(e.name, "alice@example.org/phone");
        assert_eq!(device_of(&e), "phone");
    }

    #[test]
    fn uploads_refuse_private_keys_and_garbage() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let a = uploaded_spki(cert.pem().as_bytes()).unwrap();
        let b = uploaded_spki(cert.der()).unwrap();
        assert_eq!(a, b);
        assert_eq!(uploaded_spki(kp.public_key_pem().as_bytes()).unwrap(), a);
        assert!(uploaded_spki(kp.serialize_pem().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("private key"));
        assert!(uploaded_spki(b"hello").is_err());
        assert!(uploaded_spki(b"  ").is_err());
    }

    #[test]
    fn der_ending_in_a_whitespace_byte_is_read_whole() {
        // About one ECDSA signature in fifty ends in a byte that is ASCII
        // whitespace; draw until one does (bounded: missing all 5,000
        // draws has odds near e^-97).
        let found = (0..5_000).find_map(|_| {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ok()?;
            let cert = rcgen::CertificateParams::new(Vec::<String>::new())
                .ok()?
                .self_signed(&kp)
                .ok()?;
            cert.der()
                .last()
                .is_some_and(u8::is_ascii_whitespace)
                .then_some((cert, kp))
        });
        let (cert, kp) = found.expect("a certificate ending in whitespace");
        let spki = uploaded_spki(cert.der()).unwrap();
        assert_eq!(uploaded_spki(kp.public_key_pem().as_bytes()).unwrap(), spki);
        let spki_der = kp.public_key_der();
        assert_eq!(uploaded_spki(&spki_der).unwrap(), spki);
    }

    #[test]
    fn commands_quote_the_name() {
        let c = openssl_commands("it's");
        assert!(c.contains("-out 'it'\\''s'.key"), "{c}");
        assert_eq!(openssl_commands("laptop").lines().count(), 4);
    }

    #[test]
    fn sessions_expire_after_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::new(dir.path(), &["example.org".into()], false);
        let cfg = AccountPageConfig {
            session_lifetime: Duration::from_secs(60),
            ..AccountPageConfig::default()
        };
        let page = AccountPage::new(
            cfg,
            dir.path().join("keys.yaml"),
            accounts.clone(),
            dir.path().to_owned(),
            Logins::new(accounts, 1),
        );
        let id = page.new_session("alice@example.org").unwrap();
        let now = Instant::now();
        let (_, account, csrf) = page.session_at(id.clone(), now).unwrap();
        assert_eq!(account, "alice@example.org");
        assert_eq!(csrf.len(), 43, "256 bits, base64url");
        assert!(page.session_at("other".into(), now).is_none());
        assert!(page
            .session_at(id.clone(), now + Duration::from_secs(61))
            .is_none());
        // Gone for good once seen expired.
        assert!(page.session_at(id, now).is_none());
        assert!(page.sessions().is_empty());
    }

    #[test]
    fn tokens_compare() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
