//! One IMAP session over the mail store: the connection loop, the RFC 3501
//! §3 state machine (`state`) and the dispatch of each command to the
//! handler of its concern, the identity rules of the front door, and the
//! untagged updates that tell a client about changes other sessions made.
//!
//! [`serve`] takes any byte stream (after the PROXY header was read) and
//! never owns a socket or TLS. Identity semantics (DESIGN §5):
//! - identity with preauth on: greet `* PREAUTH`, logged in as the identity's
//!   account;
//! - identity with preauth off: greet `* OK`; `AUTHENTICATE EXTERNAL`
//!   (authzid empty, the key's login or its account) logs in;
//! - `LOGIN` / `AUTHENTICATE PLAIN` with a password must name the identity's
//!   account when there is one, else `NO [AUTHENTICATIONFAILED]`;
//! - no identity: password login only.
//!
//! Handlers by concern: `auth` (LOGIN, AUTHENTICATE, ID, ENABLE),
//! `mailbox` (SELECT, EXAMINE, CREATE, DELETE, RENAME, LIST, LSUB, STATUS,
//! SUBSCRIBE), `message` (COPY, MOVE, EXPUNGE, APPEND, SEARCH, CLOSE),
//! `flags` (STORE), `fetch` (FETCH), `idle` (IDLE and the updates of other
//! sessions), `quota`, `metadata` (RFC 5464, persistent through
//! [`crate::mail::imap::metadata`]), `compress` (COMPRESS=DEFLATE and the
//! session's byte stream); they reach the store only through
//! `store::AsyncStore`.
//!
//! Invariants: message sequence numbers change only when this session
//! reports them (EXPUNGE is never sent during FETCH, STORE, SEARCH or COPY
//! by sequence number, RFC 3501 §7.4.1). Buffers are dropped when empty, so
//! an idle session holds a few hundred bytes beyond its task. Every wait on
//! the client has a deadline.

mod auth;
mod compress;
mod dispatch;
mod fetch;
mod flags;
mod idle;
mod io;
mod mailbox;
mod message;
mod metadata;
mod quota;
mod reply;
mod state;
mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use self::reply::store_err;
use self::state::State;
use self::store::AsyncStore;
use super::metadata::MetadataStore;
use super::parser::{self, Command, CommandBody, Limits, Parsed};
use super::response::{self, Code, Status};
use crate::mail::accounts::Accounts;
use crate::mail::config::MailConfig;
use crate::mail::login::Logins;
use crate::mail::peer::PeerInfo;
use crate::mail::store::{Store, StoreError};

/// RFC 2177: the server may end IDLE after 30 minutes; clients re-issue
/// it every 29.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `* OK Still here` during IDLE, well inside Delta Chat's 5-minute read
/// timeout and common NAT timeouts.
pub const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);
/// Deadline for the next command before login.
pub const UNAUTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline for the next command after login (RFC 3501 §5.4: at least 30 minutes).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed logins before the session is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Syntax errors before the session is closed.
pub const MAX_BAD_COMMANDS: u32 = 20;
/// Output is written out once it grows past this, so a big FETCH streams.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Buffers larger than this are freed once empty.
const KEEP_BUFFER: usize = 4096;
/// First read of an idle session: small, because it may wait for hours.
const IDLE_READ: usize = 256;
/// Reads while data flows.
const BUSY_READ: usize = 16 * 1024;

/// What every session of one listener shares.
#[derive(Debug)]
pub struct ImapContext {
    pub store: Store,
    pub accounts: Accounts,
    pub cfg: Arc<MailConfig>,
    pub limits: Limits,
    /// Password checks (throttled, pooled), shared with the SMTP server.
    pub logins: Arc<Logins>,
    /// Private METADATA entries, on disk under the data dir.
    pub metadata: Arc<MetadataStore>,
}

impl ImapContext {
    /// With password checks of its own (a process with SMTP too shares one
    /// [`Logins`]: [`ImapContext::with_logins`]).
    pub fn new(store: Store, accounts: Accounts, cfg: Arc<MailConfig>) -> Self {
        let logins = Logins::new(accounts.clone(), 0);
        Self::with_logins(store, accounts, cfg, logins)
    }

    pub fn with_logins(
        store: Store,
        accounts: Accounts,
        cfg: Arc<MailConfig>,
        logins: Arc<Logins>,
    ) -> Self {
        let limits = Limits {
            max_append: cfg.max_message_size,
            ..Limits::default()
        };
        Self {
            store,
            accounts,
            metadata: Arc::new(MetadataStore::new(&cfg.data_dir)),
            cfg,
            limits,
            logins,
        }
    }
}

/// Why a session ended other than by LOGOUT or the client closing.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("client silent for {0:?}")]
    Timeout(Duration),
    #[error("client closed the connection")]
    Eof,
    #[error("protocol error: {0}")]
    Fatal(String),
}

struct Session<S> {
    stream: compress::Conn<S>,
    ctx: Arc<ImapContext>,
    /// The store and accounts, async.
    store: AsyncStore,
    peer: PeerInfo,
    state: State,
    /// CONDSTORE enabled (RFC 7162 §3.1): MODSEQ in untagged FETCH.
    condstore: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
    literal_acked: Option<usize>,
    auth_failures: u32,
    bad_commands: u32,
}

/// Serve one IMAP session on `stream` (after the PROXY header, if any).
pub async fn serve<S>(stream: S, peer: PeerInfo, ctx: Arc<ImapContext>) -> Result<(), ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = tracing::info_span!("imap", client = ?peer.client_addr,
        id = peer.unique_id.as_deref().unwrap_or(""),
        identity = peer.identity.as_ref().map(|i| i.account.as_str()).unwrap_or(""));
    tracing::Instrument::instrument(
        async move {
            let mut s = Session {
                stream: compress::Conn::new(stream),
                store: AsyncStore::new(ctx.store.clone(), ctx.accounts.clone()),
                ctx,
                peer,
                state: State::NotAuthenticated,
                condstore: false,
                buf: Vec::new(),
                out: Vec::new(),
                literal_acked: None,
                auth_failures: 0,
                bad_commands: 0,
            };
            let res = s.run().await;
            let _ = s.stream.shutdown().await;
            let account = s.state.account().unwrap_or("");
            let c = s.stream.counts().unwrap_or_default();
            let compress = if s.stream.compressed() { "DEFLATE" } else { "" };
            match &res {
                Ok(()) => tracing::info!(
                    account,
                    compress,
                    deflate_plain_out = c.plain_out,
                    deflate_wire_out = c.wire_out,
                    deflate_plain_in = c.plain_in,
                    deflate_wire_in = c.wire_in,
                    "session closed"
                ),
                Err(e) => tracing::info!(
                    account,
                    compress,
                    deflate_plain_out = c.plain_out,
                    deflate_wire_out = c.wire_out,
                    deflate_plain_in = c.plain_in,
                    deflate_wire_in = c.wire_in,
                    "session ended: {e}"
                ),
            }
            res
        },
        span,
    )
    .await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn caps(&self) -> Vec<&'static str> {
        let chatmail = self.ctx.cfg.chatmail.as_ref();
        super::capabilities(super::Offer {
            quota: self.ctx.cfg.quota.is_some(),
            logged_in: self.state.account().is_some(),
            identity: self.peer.identity.is_some(),
            chatmail: chatmail.is_some(),
            compress: self.offers_compress() && !self.stream.compressed(),
        })
    }

    /// `COMPRESS=DEFLATE` is offered in chatmail mode with `imap_compress`
    /// on (an idle compressed session costs more: compress.rs).
    fn offers_compress(&self) -> bool {
        self.ctx
            .cfg
            .chatmail
            .as_ref()
            .is_some_and(|c| c.imap_compress)
    }

    async fn run(&mut self) -> Result<(), ImapError> {
        if !self.identity_valid().await {
            tracing::warn!("client key refused: its account does not exist");
            response::untagged(
                &mut self.out,
                Status::Bye,
                Some(&Code::Unavailable),
                "the account of this client key does not exist",
            );
            self.flush().await?;
            return Ok(());
        }
        let preauth = self
            .peer
            .identity
            .as_ref()
            .filter(|i| !i.no_imap_preauth)
            .map(|i| i.account.clone());
        if let Some(account) = preauth {
            if let Err(e) = self.start_account(&account).await {
                let r = store_err(e);
                response::untagged(&mut self.out, Status::Bye, r.code.as_ref(), &r.text);
                self.flush().await?;
                return Ok(());
            }
            let caps = Code::Capability(self.caps().iter().map(|s| s.to_string()).collect());
            let text = match self.ctx.cfg.banner.as_deref() {
                Some(b) => format!("{b} ready, logged in as {account}"),
                None => format!("ready, logged in as {account}"),
            };
            response::untagged(&mut self.out, Status::Preauth, Some(&caps), &text);
        } else {
            let caps = Code::Capability(self.caps().iter().map(|s| s.to_string()).collect());
            let text = match self.ctx.cfg.banner.as_deref() {
                Some(b) => format!("{b} ready"),
                None => "ready".to_owned(),
            };
            response::untagged(&mut self.out, Status::Ok, Some(&caps), &text);
        }
        loop {
            self.process_buffer().await?;
            self.flush().await?;
            if self.state.is_logout() {
                return Ok(());
            }
            let timeout = if self.state.account().is_some() {
                AUTH_TIMEOUT
            } else {
                UNAUTH_TIMEOUT
            };
            if let Err(e) = self.read_more(timeout).await {
                if let ImapError::Timeout(_) = e {
                    response::untagged(
                        &mut self.out,
                        Status::Bye,
                        None,
                        "autologout; idle too long",
                    );
                    let _ = self.flush().await;
                }
                return match e {
                    ImapError::Eof => Ok(()),
                    e => Err(e),
                };
            }
        }
    }

    /// Run every complete command in `buf`.
    async fn process_buffer(&mut self) -> Result<(), ImapError> {
        while !self.state.is_logout() && !self.buf.is_empty() {
            match parser::parse_command(&self.buf, &self.ctx.limits) {
                Parsed::Complete { command, consumed } => {
                    self.consume(consumed);
                    self.literal_acked = None;
                    self.command(command).await?;
                    if self.out.len() > OUT_HIGH_WATER {
                        self.flush().await?;
                    }
                }
                Parsed::NeedMore => return Ok(()),
                Parsed::NeedLiteral { sync, at, .. } => {
                    if sync && self.literal_acked != Some(at) {
                        response::continuation(&mut self.out, "Ready for literal data");
                        self.literal_acked = Some(at);
                    }
                    return Ok(());
                }
                Parsed::Bad {
                    tag,
                    reason,
                    consumed,
                } => {
                    self.consume(consumed);
                    self.literal_acked = None;
                    let tag = tag.unwrap_or_else(|| "*".into());
                    response::tagged(&mut self.out, &tag, Status::Bad, None, &reason);
                    self.bad_commands += 1;
                    if self.bad_commands >= MAX_BAD_COMMANDS {
                        response::untagged(&mut self.out, Status::Bye, None, "too many errors");
                        self.state.log_out();
                    }
                }
                Parsed::Fatal { reason, .. } => {
                    response::untagged(&mut self.out, Status::Bye, None, &reason);
                    self.flush().await?;
                    return Err(ImapError::Fatal(reason));
                }
            }
        }
        Ok(())
    }

    async fn start_account(&mut self, account: &str) -> Result<(), StoreError> {
        self.store.ensure_account(account).await?;
        tracing::info!(account, "logged in");
        self.state.log_in(account);
        Ok(())
    }

    async fn command(&mut self, cmd: Command) -> Result<(), ImapError> {
        let Command { tag, body } = cmd;
        // RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE, SEARCH (and
        // COPY) by sequence number; the UID forms may have them.
        let expunge_ok = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Copy { uid: false, .. }
        );
        let is_idle = matches!(body, CommandBody::Idle);
        let reply = self.dispatch(&tag, body).await?;
        let Some(reply) = reply else {
            return Ok(());
        };
        if !is_idle && self.state.selected().is_some() {
            self.sync(expunge_ok).await;
        }
        response::tagged(
            &mut self.out,
            &tag,
            reply.status,
            reply.code.as_ref(),
            &reply.text,
        );
        Ok(())
    }
}
