//! One SMTP/LMTP session over any byte stream: the command state machine,
//! identity and AUTH semantics, and the hand-over of a received message to
//! the store and the smarthost.
//!
//! Invariants:
//! - `250` after DATA is sent only after every local recipient's copy is
//!   durable in the store (one all-or-none store record) and every remote
//!   recipient was accepted by the smarthost or, with direct delivery, is
//!   durably in the outbound queue.
//! - Submission: with an identity from the front door the session starts
//!   authenticated as its account; without, MAIL needs AUTH first (`530`).
//!   MAIL FROM (`553 5.7.1`) and the `From:` header (`550 5.7.1`) must be
//!   addresses of the authenticated account.
//! - Chatmail mode (`mail.chatmail:`): the encryption rule
//!   ([`crate::mail::chatmail::filter`]) decides at the end of DATA, the
//!   outgoing rule on submission and the incoming rule on LMTP and the MX;
//!   submitted mail is cleaned of client traces and its Subject before it is
//!   stored or relayed, no `Received:` is written, and stored copies lose
//!   `Received:`/`DKIM-Signature:`/`Authentication-Results:`
//!   ([`crate::mail::chatmail::privacy`]); the per-sender send limit answers
//!   `450 4.7.1` at the first RCPT of a transaction over the limit; a MAIL
//!   FROM that is not the account's gets its `553 5.7.1` at each RCPT.
//! - Replies to pipelined commands are queued and flushed when the input has
//!   no complete command left, before waiting for more bytes.
//! - Every wait on the client has a deadline; too many errors end the session
//!   with `421`; no input can make the session panic.
//! - The inbound MX with `mail.mx.require_tls` (chatmail mode's default)
//!   answers MAIL before STARTTLS with `530 5.7.0`, as Postfix does with
//!   `smtpd_tls_security_level=encrypt`.
//! - STARTTLS (inbound MX, when certificates exist): bytes pipelined after
//!   the STARTTLS command arrived in plaintext and are discarded, never
//!   executed inside TLS (RFC 3207 §4.2); after the handshake the session
//!   starts over from EHLO.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::parser::{parse_command, Command, DataReader, DataStatus, Frame, Framer, Reply};
use super::relay;
use crate::log_safe::Escaped;
use crate::mail::accounts::{domain_of, Accounts};
use crate::mail::chatmail::send_limit::SendLimiter;
use crate::mail::chatmail::{account_flags, filter, privacy};
use crate::mail::config::MailConfig;
use crate::mail::login::{LoginError, Logins};
use crate::mail::message::{from_addresses, rfc5322_date};
use crate::mail::peer::PeerInfo;
use crate::mail::store::{unix_now, Store};

/// Idle deadline while waiting for a command or message bytes (RFC 5321 4.5.3.2.7 asks for 5 minutes).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Most recipients per message.
pub const MAX_RECIPIENTS: usize = 100;
/// Errors before the session is ended.
pub const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts before the session is ended.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Which listener a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behind the front door: AUTH or identity, relaying to the smarthost.
    Submission,
    /// RFC 2033: delivery to local accounts, one reply per recipient.
    Lmtp,
    /// MX for the local domains: local recipients only, no AUTH.
    Inbound,
}

/// What a session needs; shared by all sessions of a listener.
#[derive(Debug, Clone)]
pub struct SmtpContext {
    pub mode: Mode,
    /// Sessions per client address (the inbound MX), for sessions that do
    /// not come through its accept loop (`POST /mxdeliv`).
    pub per_peer: Option<Arc<crate::mail::listener::PeerLimit>>,
    pub cfg: Arc<MailConfig>,
    pub store: Store,
    pub accounts: Accounts,
    /// Password checks (throttled, pooled), shared with the IMAP server.
    pub logins: Arc<Logins>,
    /// Offered as STARTTLS when set (the inbound MX with certificates).
    pub starttls: Option<StartTls>,
    /// Chatmail mode's per-sender send limit (submission only).
    pub send_limit: Option<Arc<SendLimiter>>,
    /// DKIM check of arriving mail (the inbound MX, `mail.dkim.verify`).
    pub dkim_verify: Option<Arc<crate::mail::dkim::Verifier>>,
    /// DKIM signing of mail that leaves (submission).
    pub dkim_sign: Option<Arc<crate::mail::dkim::active::ActiveSigner>>,
    /// The outbound queue, with direct delivery (submission).
    pub queue: Option<Arc<crate::mail::delivery::Handle>>,
}

/// The TLS side of STARTTLS: the server certificates to answer with.
#[derive(Clone)]
pub struct StartTls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for StartTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartTls")
    }
}

/// How long a client has for the TLS handshake after `220 Ready to start TLS`.
const STARTTLS_TIMEOUT: Duration = Duration::from_secs(30);

/// The session's byte stream: plaintext until STARTTLS, TLS after.
enum Io<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    /// Only while the handshake owns the stream.
    Gone,
}

fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "stream in TLS handshake")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Io<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Gone => std::task::Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Io<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Gone => std::task::Poll::Ready(Err(gone())),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            Io::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Gone => std::task::Poll::Ready(Ok(())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("client idle for {0:?}")]
    Timeout(Duration),
}

/// The authenticated account and the addresses it may send as.
#[derive(Debug, Clone)]
struct Authed {
    account: String,
    addresses: Vec<String>,
}

#[derive(Debug)]
enum AuthStep {
    Plain,
    LoginUser,
    LoginPass(String),
    External,
}

struct Txn {
    from: String,
    /// The size the sender declared (`MAIL FROM … SIZE=`), for quota checks.
    size: Option<u64>,
    local: Vec<(String, String)>, // (recipient address, account)
    remote: Vec<String>,
    /// The send limit was counted for this transaction; `Some` if it refused.
    limited: Option<Option<Reply>>,
    /// Chatmail mode: MAIL FROM was not the account's; every RCPT gets this.
    refused_sender: Option<Reply>,
}

struct Session<'a> {
    ctx: &'a SmtpContext,
    peer: &'a PeerInfo,
    helo: Option<String>,
    esmtp: bool,
    authed: Option<Authed>,
    txn: Option<Txn>,
    errors: u32,
    auth_failures: u32,
    /// STARTTLS completed on this session.
    tls_active: bool,
    out: Vec<u8>,
    quit: bool,
    id: String,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

fn r(code: u16, text: &str) -> Reply {
    Reply::new(code, text)
}

/// Serve one session on `stream` (after the PROXY header, if any, was read).
pub async fn serve<S>(stream: S, peer: PeerInfo, ctx: Arc<SmtpContext>) -> Result<(), SmtpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = Io::Plain(stream);
    let id = format!(
        "{:x}{:04x}",
        unix_now(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0xffff
    );
    let span = tracing::info_span!("smtp", id = %id, mode = ?ctx.mode, client = ?peer.client_addr,
        identity = peer.identity.as_ref().map(|i| i.account.as_str()).unwrap_or(""));
    tracing::Instrument::instrument(
        async move {
            let authed = match (&peer.identity, ctx.mode) {
                (Some(i), Mode::Submission) => {
                    Some(identity_authed(&ctx, &i.account, &i.login).await)
                }
                _ => None,
            };
            let mut s = Session {
                ctx: &ctx,
                peer: &peer,
                helo: None,
                esmtp: false,
                authed,
                txn: None,
                errors: 0,
                auth_failures: 0,
                tls_active: false,
                out: Vec::new(),
                quit: false,
                id,
            };
            // RFC 5321 §4.3.1: the domain, then free text; a product name
            // only when the operator chose one (`mail.banner`).
            let kind = match ctx.mode {
                Mode::Lmtp => "LMTP",
                _ => "ESMTP",
            };
            let greet = match &ctx.cfg.banner {
                Some(b) => format!("{} {kind} {b} ready", ctx.cfg.hostname),
                None => format!("{} {kind} ready", ctx.cfg.hostname),
            };
            s.reply(r(220, &greet));
            let mut buf: Vec<u8> = Vec::new();
            let mut framer = Framer::default();
            let mut data: Option<DataReader> = None;
            let mut auth: Option<AuthStep> = None;
            let mut chunk = vec![0u8; 16 * 1024];
            let mut start_tls = false;
            let result = loop {
                // Handle everything complete in the buffer.
                loop {
                    if s.quit {
                        break;
                    }
                    if let Some(d) = data.as_mut() {
                        let (st, used) = d.feed(&buf);
                        buf.drain(..used);
                        if st == DataStatus::NeedMore {
                            break;
                        }
                        if let Some(d) = data.take() {
                            s.end_of_data(d).await;
                        }
                        continue;
                    }
                    let (frame, used) = framer.next(&buf);
                    let Some(frame) = frame else {
                        buf.drain(..used);
                        break;
                    };
                    let line = match frame {
                        Frame::Line(l) => Some(l.to_vec()),
                        Frame::TooLong => {
                            s.error(r(500, "5.5.2 Line too long"));
                            None
                        }
                        Frame::BareLf => {
                            s.error(r(500, "5.5.2 Bare LF: lines must end in CRLF"));
                            None
                        }
                    };
                    buf.drain(..used);
                    let Some(line) = line else {
                        auth = None;
                        continue;
                    };
                    if let Some(step) = auth.take() {
                        auth = s.auth_response(step, &line).await;
                        continue;
                    }
                    match parse_command(&line) {
                        Ok(Command::Data) => {
                            if s.data_allowed() {
                                s.reply(r(354, "Start mail input; end with <CRLF>.<CRLF>"));
                                data = Some(DataReader::new(ctx.cfg.max_message_size));
                            }
                        }
                        Ok(Command::Auth { mechanism, initial }) => {
                            auth = s.auth_start(&mechanism, initial).await;
                        }
                        Ok(Command::StartTls) if s.starttls_offered() => {
                            if !buf.is_empty() {
                                // Sent before TLS, so anyone on the path could have
                                // written it: never run it inside the TLS session.
                                tracing::warn!(
                                    bytes = buf.len(),
                                    "discarding input pipelined after STARTTLS"
                                );
                                buf.clear();
                            }
                            s.reply(r(220, "2.0.0 Ready to start TLS"));
                            start_tls = true;
                            break;
                        }
                        Ok(c) => s.command(c).await,
                        Err(reply) => s.error(reply),
                    }
                }
                if !s.out.is_empty() {
                    if let Err(e) = stream.write_all(&s.out).await {
                        break Err(e.into());
                    }
                    s.out.clear();
                    if let Err(e) = stream.flush().await {
                        break Err(e.into());
                    }
                }
                if s.quit {
                    break Ok(());
                }
                if std::mem::take(&mut start_tls) {
                    let (Io::Plain(plain), Some(tls)) =
                        (std::mem::replace(&mut stream, Io::Gone), &ctx.starttls)
                    else {
                        break Ok(());
                    };
                    match tokio::time::timeout(STARTTLS_TIMEOUT, tls.0.accept(plain)).await {
                        Ok(Ok(t)) => {
                            let (_, c) = t.get_ref();
                            tracing::info!(
                                version = %crate::tls::version_name(c.protocol_version()),
                                sni = c.server_name().unwrap_or("-"),
                                "STARTTLS done"
                            );
                            stream = Io::Tls(Box::new(t));
                            // RFC 3207 §4.2: forget everything learnt before TLS.
                            s.helo = None;
                            s.esmtp = false;
                            s.txn = None;
                            s.tls_active = true;
                            framer = Framer::default();
                            continue;
                        }
                        Ok(Err(e)) => break Err(e.into()),
                        Err(_) => break Err(SmtpError::Timeout(STARTTLS_TIMEOUT)),
                    }
                }
                let n = match tokio::time::timeout(COMMAND_TIMEOUT, stream.read(&mut chunk)).await {
                    Err(_) => {
                        let _ = stream
                            .write_all(
                                &r(421, "4.4.2 Idle too long, closing connection").to_bytes(),
                            )
                            .await;
                        break Err(SmtpError::Timeout(COMMAND_TIMEOUT));
                    }
                    Ok(Err(e)) => break Err(e.into()),
                    Ok(Ok(n)) => n,
                };
                if n == 0 {
                    break Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let _ = stream.shutdown().await;
            match &result {
                Ok(()) => tracing::info!(errors = s.errors, "session closed"),
                Err(e) => tracing::info!(errors = s.errors, "session ended: {e}"),
            }
            result
        },
        span,
    )
    .await
}

/// The sending rights an identity from the front door grants.
async fn identity_authed(ctx: &SmtpContext, account: &str, login: &str) -> Authed {
    let mut addresses = vec![account.to_lowercase(), login.to_lowercase()];
    let accounts = ctx.accounts.clone();
    let acc = account.to_lowercase();
    if let Ok(Ok(more)) = tokio::task::spawn_blocking(move || accounts.addresses(&acc)).await {
        addresses.extend(more);
    }
    addresses.sort();
    addresses.dedup();
    Authed {
        account: account.to_lowercase(),
        addresses,
    }
}

impl Session<'_> {
    fn reply(&mut self, rep: Reply) {
        self.out.extend_from_slice(&rep.to_bytes());
    }

    fn error(&mut self, rep: Reply) {
        self.errors += 1;
        // A reply may quote the client (an unknown parameter).
        tracing::debug!(reply = %Escaped(&rep), "client error");
        self.reply(rep);
        if self.errors >= MAX_ERRORS {
            self.reply(r(421, "4.7.0 Too many errors, closing connection"));
            self.quit = true;
        }
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![format!("{} greets {name}", self.ctx.cfg.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.ctx.cfg.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("SMTPUTF8".into());
        if self.starttls_offered() {
            lines.push("STARTTLS".into());
        }
        if self.ctx.mode == Mode::Submission {
            let mut mechs = vec!["PLAIN", "LOGIN"];
            if self.peer.identity.is_some() {
                mechs.push("EXTERNAL");
            }
            lines.push(format!("AUTH {}", mechs.join(" ")));
        }
        Reply { code: 250, lines }
    }

    fn starttls_offered(&self) -> bool {
        self.ctx.starttls.is_some() && !self.tls_active
    }

    async fn command(&mut self, c: Command) {
        let lmtp = self.ctx.mode == Mode::Lmtp;
        match c {
            Command::Ehlo(n) | Command::Helo(n) if lmtp => {
                let _ = n;
                self.error(r(500, "5.5.1 This is LMTP: use LHLO"));
            }
            Command::Lhlo(_) if !lmtp => self.error(r(500, "5.5.1 LHLO is for LMTP; use EHLO")),
            Command::Ehlo(n) | Command::Lhlo(n) => {
                self.txn = None;
                let rep = self.ehlo_reply(&n);
                self.helo = Some(n);
                self.esmtp = true;
                self.reply(rep);
            }
            Command::Helo(n) => {
                self.txn = None;
                self.reply(Reply::new(
                    250,
                    format!("{} greets {n}", self.ctx.cfg.hostname),
                ));
                self.helo = Some(n);
                self.esmtp = false;
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to).await,
            Command::Rset => {
                self.txn = None;
                self.reply(r(250, "2.0.0 Ok"));
            }
            Command::Noop => self.reply(r(250, "2.0.0 Ok")),
            Command::Quit => {
                self.reply(r(221, "2.0.0 Bye"));
                self.quit = true;
            }
            Command::Vrfy => self.reply(r(252, "2.0.0 Cannot verify the user; send mail and see")),
            Command::Help => self.reply(r(214, "2.0.0 See RFC 5321")),
            Command::StartTls if self.tls_active => self.error(r(503, "5.5.1 TLS already active")),
            Command::StartTls => self.error(r(502, "5.5.1 STARTTLS not available here")),
            Command::Bdat => self.error(r(502, "5.5.1 BDAT not implemented; use DATA")),
            Command::Data | Command::Auth { .. } => {}
        }
    }

    fn mail(&mut self, from: String, params: super::parser::MailParams) {
        if self.helo.is_none() {
            return self.error(r(503, "5.5.1 Send EHLO first"));
        }
        if self.txn.is_some() {
            return self.error(r(503, "5.5.1 Nested MAIL command"));
        }
        if self.ctx.mode == Mode::Inbound
            && self.ctx.cfg.mx_require_tls
            && !self.tls_active
            && !self.peer.tls
        {
            // Postfix's words with smtpd_tls_security_level=encrypt (RFC 3207 §4).
            tracing::info!("plaintext MAIL refused: mail.mx.require_tls");
            return self.error(r(530, "5.7.0 Must issue a STARTTLS command first"));
        }
        if params
            .size
            .is_some_and(|s| s > self.ctx.cfg.max_message_size as u64)
        {
            return self.error(r(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
        }
        if !from.is_ascii() && !params.smtputf8 {
            return self.error(r(553, "5.6.7 Non-ASCII address needs SMTPUTF8"));
        }
        let mut refused_sender = None;
        if self.ctx.mode == Mode::Submission {
            let Some(a) = &self.authed else {
                return self.error(r(530, "5.7.0 Authentication required"));
            };
            let f = from.to_lowercase();
            if !a.addresses.contains(&f) {
                // A quoted local part may hold any printable text.
                tracing::info!(from = %Escaped(&from), account = %a.account, "MAIL FROM not an address of the account");
                let no = r(553, "5.7.1 Sender address not allowed for this account");
                if self.ctx.cfg.chatmail.is_none() {
                    return self.error(no);
                }
                // A chatmail relay's Postfix delays the refusal to RCPT
                // (smtpd_delay_reject), where its clients look for it.
                refused_sender = Some(no);
            }
        }
        self.txn = Some(Txn {
            from,
            size: params.size,
            local: Vec::new(),
            remote: Vec::new(),
            limited: None,
            refused_sender,
        });
        self.reply(r(250, "2.1.0 Ok"));
    }

    async fn rcpt(&mut self, to: String) {
        let Some(txn) = &self.txn else {
            return self.error(r(503, "5.5.1 Need MAIL before RCPT"));
        };
        if let Some(no) = txn.refused_sender.clone() {
            return self.error(no);
        }
        if txn.local.len() + txn.remote.len() >= MAX_RECIPIENTS {
            return self.reply(r(452, "4.5.3 Too many recipients"));
        }
        if let Some(rep) = self.send_limited() {
            return self.reply(rep);
        }
        let domain = domain_of(&to).trim_end_matches('.').to_ascii_lowercase();
        if self.ctx.cfg.is_local_domain(&domain) {
            let accounts = self.ctx.accounts.clone();
            let addr = to.clone();
            let found = tokio::task::spawn_blocking(move || accounts.account_for(&addr)).await;
            match found {
                Ok(Ok(Some(account))) => {
                    if self.over_quota(&account).await {
                        return self.reply(r(552, "5.2.2 Mailbox full"));
                    }
                    if let Some(t) = self.txn.as_mut() {
                        t.local.push((to, account));
                    }
                    self.reply(r(250, "2.1.5 Ok"));
                }
                Ok(Ok(None)) => self.error(r(550, "5.1.1 No such user here")),
                Ok(Err(e)) => {
                    tracing::error!("accounts lookup failed: {e}");
                    self.reply(r(451, "4.3.0 Temporary server error, try again later"));
                }
                Err(e) => {
                    tracing::error!("accounts lookup task failed: {e}");
                    self.reply(r(451, "4.3.0 Temporary server error, try again later"));
                }
            }
            return;
        }
        if self.ctx.mode == Mode::Submission
            && (self.ctx.cfg.relay.is_some() || self.ctx.queue.is_some())
        {
            if let Some(t) = self.txn.as_mut() {
                t.remote.push(to);
            }
            return self.reply(r(250, "2.1.5 Ok"));
        }
        if self.ctx.mode == Mode::Submission {
            self.error(r(550, "5.7.1 Relaying not available"))
        } else {
            self.error(r(550, "5.7.1 Relaying denied: not a local domain"))
        }
    }

    /// Chatmail's per-sender send limit, counted once per transaction at its
    /// first RCPT (where a chatmail relay's Postfix reports filtermail's
    /// MAIL FROM verdict), keyed by the authenticated account. The reply is
    /// filtermail's; every RCPT of a refused transaction gets it.
    fn send_limited(&mut self) -> Option<Reply> {
        let limiter = self.ctx.send_limit.as_ref()?;
        if self.ctx.mode != Mode::Submission {
            return None;
        }
        let account = self.authed.as_ref().map(|a| a.account.clone())?;
        let txn = self.txn.as_mut()?;
        if let Some(done) = &txn.limited {
            return done.clone();
        }
        let verdict = match limiter.check(&account) {
            Ok(()) => None,
            Err(wait) => {
                let until =
                    unix_now().saturating_add(i64::try_from(wait.as_secs()).unwrap_or(0) + 1);
                tracing::info!(account = %account, wait_ms = wait.as_millis() as u64, "send limit reached");
                let from: String = txn
                    .from
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(254)
                    .collect();
                Some(Reply::new(
                    450,
                    format!(
                        "4.7.1: Too much mail from <{from}>, rate-limited until {}",
                        rfc5322_date(until)
                    ),
                ))
            }
        };
        txn.limited = Some(verdict.clone());
        verdict
    }

    /// Is `account` at its quota, or would the declared SIZE take it over?
    /// (Without SIZE a message may go over by at most one message.)
    async fn over_quota(&self, account: &str) -> bool {
        let Some(quota) = self.ctx.cfg.quota else {
            return false;
        };
        let incoming = self.txn.as_ref().and_then(|t| t.size).unwrap_or(0);
        let (store, a) = (self.ctx.store.clone(), account.to_owned());
        let used = tokio::task::spawn_blocking(move || store.usage(&a))
            .await
            .unwrap_or(0);
        let over = used >= quota || used.saturating_add(incoming) > quota;
        if over {
            tracing::info!(account, used, quota, incoming, "recipient over quota");
        }
        over
    }

    fn data_allowed(&mut self) -> bool {
        match &self.txn {
            None => {
                self.error(r(503, "5.5.1 Need MAIL and RCPT before DATA"));
                false
            }
            Some(t) if t.local.is_empty() && t.remote.is_empty() => {
                // RFC 2920 3.1: after failed pipelined RCPTs.
                self.error(r(554, "5.5.1 No valid recipients"));
                false
            }
            Some(_) => true,
        }
    }

    fn received_header(&self) -> String {
        let client = self
            .peer
            .client_addr
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "local".into());
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let mut with = match self.ctx.mode {
            Mode::Lmtp => "LMTP".to_string(),
            _ if self.esmtp => "ESMTP".to_string(),
            _ => "SMTP".to_string(),
        };
        if (self.peer.tls || self.tls_active) && with != "LMTP" {
            with.push('S');
        }
        if self.authed.is_some() && self.ctx.mode == Mode::Submission && with != "LMTP" {
            with.push('A');
        }
        // The client's helo name is client-chosen text: keep it printable.
        let helo: String = helo
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        let comment = match &self.ctx.cfg.banner {
            Some(b) => format!(" ({b})"),
            None => String::new(),
        };
        format!(
            "Received: from {helo} ([{client}])\r\n\tby {}{comment} with {with} id {};\r\n\t{}\r\n",
            self.ctx.cfg.hostname,
            self.id,
            rfc5322_date(unix_now())
        )
    }

    async fn end_of_data(&mut self, d: DataReader) {
        let Some(txn) = self.txn.take() else { return };
        let n_local = txn.local.len();
        let per_rcpt = |s: &mut Self, rep: Reply| {
            if s.ctx.mode == Mode::Lmtp {
                for _ in 0..n_local.max(1) {
                    s.reply(rep.clone());
                }
            } else {
                s.reply(rep);
            }
        };
        if d.too_big() {
            return per_rcpt(self, r(552, "5.3.4 Message too big"));
        }
        if d.bare_lf {
            return per_rcpt(
                self,
                r(550, "5.6.0 Bare LF in message: lines must end in CRLF"),
            );
        }
        let mut body = d.into_message();
        // DKIM on the MX comes first, as on a chatmail relay (filtermail
        // refuses unsigned mail whatever its encryption).
        let mut auth_results = None;
        if self.ctx.mode == Mode::Inbound {
            if let Some(v) = &self.ctx.dkim_verify {
                match v.check(&body).await {
                    Ok(ar) => {
                        tracing::info!("DKIM: dkim=pass");
                        auth_results = Some(ar);
                    }
                    Err(f) => {
                        tracing::info!(code = f.code, reason = %Escaped(&f.text), "DKIM: refused");
                        return self.reply(Reply::new(f.code, f.text));
                    }
                }
            }
        }
        // Local recipients the chatmail rule refuses (LMTP answers each).
        let mut refused = vec![false; n_local];
        if self.ctx.cfg.chatmail.is_some() {
            match self.chatmail_rule(&txn, &body).await {
                Ok(r) => refused = r,
                Err(rep) => return per_rcpt(self, rep),
            }
        }
        if self.ctx.mode == Mode::Submission {
            let froms = from_addresses(&body);
            let allowed = self.authed.as_ref().is_some_and(|a| {
                !froms.is_empty() && froms.iter().all(|f| a.addresses.contains(f))
            });
            if !allowed {
                tracing::info!(from = ?froms, "From: header does not match the account");
                return self.reply(r(
                    550,
                    "5.7.1 From header does not match the authenticated account",
                ));
            }
            if self.ctx.cfg.chatmail.is_some() {
                body = privacy::clean_submission(&body);
            }
        }
        let msg = if self.ctx.cfg.chatmail.is_some() {
            // No trace of the client: chatmail relays strip every Received:
            // from submitted mail and from stored copies.
            body
        } else {
            let mut msg = self.received_header().into_bytes();
            msg.extend_from_slice(&body);
            drop(body);
            msg
        };
        if !txn.remote.is_empty() {
            if let Some(smarthost) = &self.ctx.cfg.relay {
                let signed = self
                    .ctx
                    .dkim_sign
                    .as_ref()
                    .filter(|_| self.ctx.mode == Mode::Submission)
                    .map(|s| s.sign_message(&self.ctx.cfg.domains, &msg));
                match relay::send(
                    smarthost,
                    &self.ctx.cfg.hostname,
                    &txn.from,
                    &txn.remote,
                    signed.as_deref().unwrap_or(&msg),
                )
                .await
                {
                    Ok(()) => tracing::info!(rcpts = txn.remote.len(), "handed to smarthost"),
                    Err(relay::RelayError::Permanent(e)) => {
                        tracing::warn!("smarthost refused: {e}");
                        return self.reply(r(554, "5.0.0 Smarthost refused the message"));
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        return self.reply(r(451, "4.4.1 Smarthost unavailable, try again later"));
                    }
                }
            } else if let Some(queue) = &self.ctx.queue {
                // Direct delivery: signed, then queued durably before the
                // 250 (the queue's worker takes it from there).
                let signed = match &self.ctx.dkim_sign {
                    Some(s) => s.sign_message(&self.ctx.cfg.domains, &msg),
                    None => msg.clone(),
                };
                match queue.enqueue(&txn.from, &txn.remote, signed).await {
                    Ok(id) => {
                        tracing::info!(queue_id = %id, rcpts = txn.remote.len(), "queued for delivery")
                    }
                    Err(e) => {
                        tracing::error!("queueing failed: {e}");
                        return self
                            .reply(r(451, "4.3.0 Could not queue the message, try again later"));
                    }
                }
            }
        }
        let accounts: Vec<String> = txn
            .local
            .iter()
            .zip(&refused)
            .filter(|(_, no)| !**no)
            .map(|((_, a), _)| a.clone())
            .collect();
        if !accounts.is_empty() {
            let mut stored = if self.ctx.cfg.chatmail.is_some() {
                privacy::clean_stored(&msg)
            } else {
                msg
            };
            if let Some(ar) = auth_results {
                let mut with = ar.into_bytes();
                with.extend_from_slice(&stored);
                stored = with;
            }
            let n = accounts.len();
            let store = self.ctx.store.clone();
            let size = stored.len();
            let res = tokio::task::spawn_blocking(move || store.deliver(&accounts, &stored)).await;
            match res {
                Ok(Ok(_)) => tracing::info!(rcpts = n, size, "delivered"),
                Ok(Err(e)) => {
                    tracing::error!("delivery failed: {e}");
                    return per_rcpt(
                        self,
                        r(451, "4.3.0 Could not store the message, try again later"),
                    );
                }
                Err(e) => {
                    tracing::error!("delivery task failed: {e}");
                    return per_rcpt(
                        self,
                        r(451, "4.3.0 Could not store the message, try again later"),
                    );
                }
            }
        }
        let ok = Reply::new(250, format!("2.0.0 Ok: queued as {}", self.id));
        if self.ctx.mode == Mode::Lmtp && refused.iter().any(|r| *r) {
            let (code, text) = filter::ENCRYPTION_NEEDED;
            for no in refused {
                self.reply(if no { r(code, text) } else { ok.clone() });
            }
            return;
        }
        per_rcpt(self, ok);
    }

    /// The chatmail encryption rule for the message in `body`: `Err` with the
    /// reply for the whole message, or which local recipients refuse it (a
    /// cleartext message for accounts that do not accept cleartext). On the
    /// inbound MX one refusing recipient refuses the message, as filtermail
    /// does; LMTP answers each recipient.
    async fn chatmail_rule(&mut self, txn: &Txn, body: &[u8]) -> Result<Vec<bool>, Reply> {
        let n_local = txn.local.len();
        let Some(cm) = self.ctx.cfg.chatmail.as_ref() else {
            return Ok(vec![false; n_local]);
        };
        let refusal = |f: filter::Refusal| Reply::new(f.code, f.text);
        if self.ctx.mode == Mode::Submission {
            let rcpts: Vec<String> = txn
                .local
                .iter()
                .map(|(a, _)| a.clone())
                .chain(txn.remote.iter().cloned())
                .collect();
            let pass = filter::Passthrough {
                senders: &cm.passthrough_senders,
                recipients: &cm.passthrough_recipients,
            };
            return match filter::check_outgoing(pass, &txn.from, &rcpts, body) {
                Ok(why) => {
                    tracing::info!(pass = ?why, "chatmail rule: outgoing mail passes");
                    Ok(vec![false; n_local])
                }
                Err(f) => {
                    tracing::info!(code = f.code, reason = %f.text, "chatmail rule: outgoing mail refused");
                    Err(refusal(f))
                }
            };
        }
        match filter::check_incoming(body) {
            Err(f) => {
                tracing::info!(code = f.code, reason = %f.text, "chatmail rule: incoming mail refused");
                Err(refusal(f))
            }
            Ok(filter::Incoming::Protected(why)) => {
                tracing::debug!(pass = ?why, "chatmail rule: incoming mail passes");
                Ok(vec![false; n_local])
            }
            Ok(filter::Incoming::Cleartext) => {
                let dir = self.ctx.cfg.data_dir.clone();
                let accounts: Vec<String> = txn.local.iter().map(|(_, a)| a.clone()).collect();
                let refused = tokio::task::spawn_blocking(move || {
                    accounts
                        .iter()
                        .map(|a| !account_flags::cleartext_incoming_ok(&dir, a))
                        .collect::<Vec<bool>>()
                })
                .await
                .unwrap_or_else(|_| vec![true; n_local]);
                let n_refused = refused.iter().filter(|r| **r).count();
                if n_refused > 0 {
                    tracing::info!(
                        refused = n_refused,
                        rcpts = n_local,
                        "chatmail rule: cleartext for accounts that enforce encryption"
                    );
                }
                let (code, text) = filter::ENCRYPTION_NEEDED;
                if n_refused == n_local || (n_refused > 0 && self.ctx.mode != Mode::Lmtp) {
                    return Err(r(code, text));
                }
                Ok(refused)
            }
        }
    }

    async fn auth_start(&mut self, mech: &str, initial: Option<String>) -> Option<AuthStep> {
        if self.ctx.mode != Mode::Submission {
            self.error(r(502, "5.5.1 AUTH not available here"));
            return None;
        }
        if self.helo.is_none() || !self.esmtp {
            self.error(r(503, "5.5.1 Send EHLO first"));
            return None;
        }
        if self.txn.is_some() {
            self.error(r(503, "5.5.1 AUTH not allowed during a mail transaction"));
            return None;
        }
        // With an identity the session starts authenticated, yet a client
        // that insists on AUTH gets it checked against that identity.
        if self.authed.is_some() && self.peer.identity.is_none() {
            self.error(r(503, "5.5.1 Already authenticated"));
            return None;
        }
        let step = match mech {
            "PLAIN" => AuthStep::Plain,
            "LOGIN" => AuthStep::LoginUser,
            "EXTERNAL" => AuthStep::External,
            _ => {
                self.error(r(504, "5.5.4 Unrecognized authentication mechanism"));
                return None;
            }
        };
        match initial {
            Some(i) => self.auth_response(step, i.as_bytes()).await,
            None => {
                let prompt = match step {
                    AuthStep::LoginUser => "VXNlcm5hbWU6",
                    _ => "",
                };
                self.reply(Reply::new(334, prompt));
                Some(step)
            }
        }
    }

    async fn auth_response(&mut self, step: AuthStep, line: &[u8]) -> Option<AuthStep> {
        let text = String::from_utf8_lossy(line).trim().to_owned();
        if text == "*" {
            self.error(r(501, "5.0.0 Authentication cancelled"));
            return None;
        }
        // "=" is an empty initial response (RFC 4954 4).
        let decoded = if text == "=" {
            Some(Vec::new())
        } else {
            b64(&text)
        };
        let Some(decoded) = decoded else {
            self.error(r(501, "5.5.2 Cannot decode base64"));
            return None;
        };
        match step {
            AuthStep::LoginUser => {
                self.reply(Reply::new(334, "UGFzc3dvcmQ6"));
                Some(AuthStep::LoginPass(
                    String::from_utf8_lossy(&decoded).into_owned(),
                ))
            }
            AuthStep::LoginPass(user) => {
                let pass = String::from_utf8_lossy(&decoded).into_owned();
                self.password_login(&user, &pass).await;
                None
            }
            AuthStep::Plain => {
                let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
                if parts.len() != 3 {
                    self.error(r(501, "5.5.2 Malformed PLAIN response"));
                    return None;
                }
                let authz = String::from_utf8_lossy(parts[0]).to_lowercase();
                let user = String::from_utf8_lossy(parts[1]).into_owned();
                let pass = String::from_utf8_lossy(parts[2]).into_owned();
                if !authz.is_empty() && authz != user.to_lowercase() {
                    self.auth_failed("PLAIN authorization identity differs from the user");
                    return None;
                }
                self.password_login(&user, &pass).await;
                None
            }
            AuthStep::External => {
                let Some(id) = &self.peer.identity else {
                    self.auth_failed("EXTERNAL without a client key identity");
                    return None;
                };
                let authz = String::from_utf8_lossy(&decoded).to_lowercase();
                let ok = authz.is_empty()
                    || authz == id.login.to_lowercase()
                    || self
                        .authed
                        .as_ref()
                        .is_some_and(|a| a.addresses.contains(&authz));
                if ok {
                    self.reply(r(235, "2.7.0 Authentication successful"));
                } else {
                    self.auth_failed("EXTERNAL authorization identity is not the key's account");
                }
                None
            }
        }
    }

    fn auth_failed(&mut self, why: &str) {
        self.auth_failures += 1;
        tracing::info!(
            failures = self.auth_failures,
            "authentication failed: {why}"
        );
        self.error(r(535, "5.7.8 Authentication credentials invalid"));
        if self.auth_failures >= MAX_AUTH_FAILURES && !self.quit {
            self.reply(r(421, "4.7.0 Too many failed authentications"));
            self.quit = true;
        }
    }

    async fn password_login(&mut self, user: &str, pass: &str) {
        let client = self.peer.client_addr.map(|a| a.ip());
        let account = match self.ctx.logins.check(client, user, pass).await {
            Ok(Some(a)) => a,
            Ok(None) => return self.auth_failed("wrong user or password"),
            Err(e) if e.is_limit() => {
                // Counted like a failure: a session that keeps trying is closed.
                self.auth_failures += 1;
                self.error(r(454, "4.7.0 Too many failed logins, try again later"));
                if self.auth_failures >= MAX_AUTH_FAILURES && !self.quit {
                    self.reply(r(421, "4.7.0 Too many failed authentications"));
                    self.quit = true;
                }
                return;
            }
            Err(LoginError::Account(e)) => {
                tracing::error!("accounts: {e}");
                return self.reply(r(454, "4.7.0 Temporary authentication failure"));
            }
            Err(e) => {
                tracing::error!("auth: {e}");
                return self.reply(r(454, "4.7.0 Temporary authentication failure"));
            }
        };
        if self.peer.identity.is_some() {
            // A password must be for the key's own account (DESIGN §5).
            let same = self
                .authed
                .as_ref()
                .is_some_and(|a| a.account == account || a.addresses.contains(&account));
            if !same {
                return self.auth_failed("password login for another account than the key's");
            }
            self.reply(r(235, "2.7.0 Authentication successful"));
            return;
        }
        self.authed = Some(identity_authed(self.ctx, &account, &account).await);
        tracing::info!(account = %account, "authenticated with password");
        self.reply(r(235, "2.7.0 Authentication successful"));
    }
}
