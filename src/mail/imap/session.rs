//! One IMAP session over the mail store: the state machine of RFC 3501 §3
//! (not authenticated, authenticated, selected, logout), the identity rules
//! of the front door, and the untagged updates that tell a client about
//! changes other sessions made.
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
//! Invariants: the selected mailbox is a snapshot of (UID, MODSEQ) pairs, so
//! message sequence numbers change only when this session reports them
//! (EXPUNGE is never sent during FETCH, STORE, SEARCH or COPY by sequence
//! number, RFC 3501 §7.4.1). Buffers are dropped when empty, so an idle
//! session holds a few hundred bytes beyond its task. Every wait on the
//! client has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::mime;
use super::parser::{
    self, AuthLine, Command, CommandBody, FetchItem, IdleEnd, Limits, ListCommand, Parsed,
    SearchKey, StatusItem, StoreMode,
};
use super::response::{self, Code, FetchData, Status};
use super::search;
use super::sequence::{format_numbers, SeqSet};
use super::types::{DateTime, Flag};
use crate::mail::accounts::Accounts;
use crate::mail::config::MailConfig;
use crate::mail::login::{LoginError, Logins};
use crate::mail::peer::PeerInfo;
use crate::mail::store::{self, FlagOp, MessageMeta, Store, StoreError};

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
/// METADATA entries kept per account.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Output is written out once it grows past this, so a big FETCH streams.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Buffers larger than this are freed once empty.
const KEEP_BUFFER: usize = 4096;
/// First read of an idle session: small, because it may wait for hours.
const IDLE_READ: usize = 256;
/// Reads while data flows.
const BUSY_READ: usize = 16 * 1024;

/// Capabilities after login (and before, plus the AUTH ones).
const CAPS: &[&str] = &[
    "IMAP4rev1",
    "LITERAL+",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "ENABLE",
    "ID",
    "NAMESPACE",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "METADATA",
    "WITHIN",
];

/// What every session of one listener shares.
#[derive(Debug)]
pub struct ImapContext {
    pub store: Store,
    pub accounts: Accounts,
    pub cfg: Arc<MailConfig>,
    pub limits: Limits,
    /// Password checks (throttled, pooled), shared with the SMTP server.
    pub logins: Arc<Logins>,
    /// METADATA values by (account, mailbox, entry); in memory only (push
    /// tokens are re-registered by clients on every connection).
    metadata: Mutex<HashMap<(String, String, String), Vec<u8>>>,
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
            cfg,
            limits,
            logins,
            metadata: Mutex::new(HashMap::new()),
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

/// A tagged reply.
struct Reply {
    status: Status,
    code: Option<Code>,
    text: String,
}

fn ok(text: &str) -> Reply {
    Reply {
        status: Status::Ok,
        code: None,
        text: text.into(),
    }
}
fn ok_code(code: Code, text: &str) -> Reply {
    Reply {
        status: Status::Ok,
        code: Some(code),
        text: text.into(),
    }
}
fn no(code: Option<Code>, text: &str) -> Reply {
    Reply {
        status: Status::No,
        code,
        text: text.into(),
    }
}
fn bad(text: &str) -> Reply {
    Reply {
        status: Status::Bad,
        code: None,
        text: text.into(),
    }
}

fn store_err(e: StoreError) -> Reply {
    let code = match &e {
        StoreError::NoSuchMailbox(_) => Code::Nonexistent,
        StoreError::MailboxExists(_) => Code::AlreadyExists,
        StoreError::CannotDeleteInbox | StoreError::BadName(_) => Code::Cannot,
        StoreError::NoSuchMessage(_) => Code::Expunged,
        StoreError::UidsExhausted => Code::Limit,
        StoreError::Io(_) | StoreError::Locked(_) | StoreError::Corrupt(_) => {
            tracing::error!("store: {e}");
            return no(Some(Code::ServerBug), "internal error, try again later");
        }
    };
    no(Some(code), &e.to_string())
}

/// Run blocking store work (fsync, file reads) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
}

fn to_flags(v: &std::collections::BTreeSet<String>) -> Vec<Flag> {
    v.iter().map(|s| Flag::from_atom(s)).collect()
}

fn flag_strings(v: &[Flag]) -> Vec<String> {
    v.iter()
        .filter(|f| **f != Flag::Recent)
        .map(|f| f.as_str().to_owned())
        .collect()
}

/// The selected mailbox as this session has reported it.
struct Selected {
    name: String,
    read_only: bool,
    /// (UID, MODSEQ) by message sequence number - 1.
    msgs: Vec<(u32, u64)>,
}

impl Selected {
    fn uids(&self) -> Vec<u32> {
        self.msgs.iter().map(|m| m.0).collect()
    }
    fn msn_of(&self, uid: u32) -> Option<u32> {
        self.msgs
            .binary_search_by_key(&uid, |m| m.0)
            .ok()
            .and_then(|i| u32::try_from(i + 1).ok())
    }
}

fn find(fresh: &[MessageMeta], uid: u32) -> Option<&MessageMeta> {
    fresh
        .binary_search_by_key(&uid, |m| m.uid)
        .ok()
        .and_then(|i| fresh.get(i))
}

/// RFC 6154 attribute implied by a mailbox name.
fn special_use(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "sent" | "sent messages" | "sent items" => Some("\\Sent"),
        "trash" | "deleted messages" | "deleted items" => Some("\\Trash"),
        "drafts" => Some("\\Drafts"),
        "junk" | "spam" => Some("\\Junk"),
        "archive" => Some("\\Archive"),
        _ => None,
    }
}

/// LIST pattern match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the delimiter. Dynamic programming, so no pattern can make
/// it take more than `pattern × name` steps.
fn wildmatch(pat: &[u8], name: &[u8]) -> bool {
    let delim = store::DELIMITER as u8;
    // prev[j]: pattern prefix so far matches name[..j].
    let mut prev = vec![false; name.len() + 1];
    prev[0] = true;
    for &p in pat {
        let mut cur = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= prev[j];
                    cur[j] = any;
                    if p == b'%' && j < name.len() && name[j] == delim {
                        // `%` cannot span the delimiter: restart after it.
                        any = false;
                    }
                }
            }
            _ => {
                for j in 1..=name.len() {
                    cur[j] = prev[j - 1] && name[j - 1] == p;
                }
            }
        }
        prev = cur;
    }
    prev[name.len()]
}

struct Session<S> {
    stream: S,
    ctx: Arc<ImapContext>,
    peer: PeerInfo,
    account: Option<String>,
    selected: Option<Selected>,
    condstore: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
    literal_acked: Option<usize>,
    auth_failures: u32,
    bad_commands: u32,
    logout: bool,
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
                stream,
                ctx,
                peer,
                account: None,
                selected: None,
                condstore: false,
                buf: Vec::new(),
                out: Vec::new(),
                literal_acked: None,
                auth_failures: 0,
                bad_commands: 0,
                logout: false,
            };
            let res = s.run().await;
            let _ = s.stream.shutdown().await;
            match &res {
                Ok(()) => tracing::info!(
                    account = s.account.as_deref().unwrap_or(""),
                    "session closed"
                ),
                Err(e) => {
                    tracing::info!(
                        account = s.account.as_deref().unwrap_or(""),
                        "session ended: {e}"
                    )
                }
            }
            res
        },
        span,
    )
    .await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn caps(&self) -> Vec<&'static str> {
        let mut c = CAPS.to_vec();
        if self.ctx.cfg.quota.is_some() {
            c.push("QUOTA");
            c.push("QUOTA=RES-STORAGE");
        }
        if self.account.is_none() {
            c.push("SASL-IR");
            c.push("AUTH=PLAIN");
            if self.peer.identity.is_some() {
                c.push("AUTH=EXTERNAL");
            }
        }
        c
    }

    /// Does the identity's account exist? A key left in the registry after
    /// its account was removed must not open the mailbox (nor recreate it).
    async fn identity_valid(&self) -> bool {
        let Some(id) = &self.peer.identity else {
            return true;
        };
        let (accounts, a) = (self.ctx.accounts.clone(), id.account.clone());
        match tokio::task::spawn_blocking(move || accounts.account_for(&a)).await {
            Ok(Ok(Some(acc))) => acc == id.account,
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::error!("accounts: {e}");
                false
            }
            Err(e) => {
                tracing::error!("accounts task: {e}");
                false
            }
        }
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
            let text = format!("frontdoor IMAP ready, logged in as {account}");
            response::untagged(&mut self.out, Status::Preauth, Some(&caps), &text);
        } else {
            let caps = Code::Capability(self.caps().iter().map(|s| s.to_string()).collect());
            response::untagged(
                &mut self.out,
                Status::Ok,
                Some(&caps),
                "frontdoor IMAP ready",
            );
        }
        loop {
            self.process_buffer().await?;
            self.flush().await?;
            if self.logout {
                return Ok(());
            }
            let timeout = if self.account.is_some() {
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

    /// Read more client bytes into `buf` within `timeout`.
    async fn read_more(&mut self, timeout: Duration) -> Result<(), ImapError> {
        let want = if self.buf.is_empty() {
            IDLE_READ
        } else {
            BUSY_READ
        };
        self.buf.reserve(want);
        match tokio::time::timeout(timeout, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ImapError::Timeout(timeout)),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(0)) => Err(ImapError::Eof),
            Ok(Ok(_)) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), ImapError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
    }

    /// Run every complete command in `buf`.
    async fn process_buffer(&mut self) -> Result<(), ImapError> {
        while !self.logout && !self.buf.is_empty() {
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
                        self.logout = true;
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
        let (st, a) = (self.ctx.store.clone(), account.to_owned());
        blocking(move || st.ensure_account(&a)).await?;
        tracing::info!(account, "logged in");
        self.account = Some(account.to_owned());
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
        if !is_idle && self.selected.is_some() {
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

    /// Run one command; `None` when it already wrote its tagged reply.
    async fn dispatch(&mut self, tag: &str, body: CommandBody) -> Result<Option<Reply>, ImapError> {
        use CommandBody as C;
        // Valid in any state.
        match body {
            C::Capability => {
                let caps = self.caps();
                response::capability(&mut self.out, &caps);
                return Ok(Some(ok("CAPABILITY completed")));
            }
            C::Noop => return Ok(Some(ok("NOOP completed"))),
            C::Check => {
                return Ok(Some(if self.selected.is_some() {
                    ok("CHECK completed")
                } else {
                    bad("no mailbox selected")
                }))
            }
            C::Logout => {
                response::untagged(&mut self.out, Status::Bye, None, "logging out");
                self.logout = true;
                return Ok(Some(ok("LOGOUT completed")));
            }
            C::Id { .. } => {
                response::id(
                    &mut self.out,
                    Some(&[
                        ("name", "frontdoor"),
                        ("version", env!("CARGO_PKG_VERSION")),
                    ]),
                );
                return Ok(Some(ok("ID completed")));
            }
            C::StartTls => {
                return Ok(Some(bad(
                    "STARTTLS not offered: TLS ends at the front door",
                )))
            }
            C::Compress { .. } => {
                return Ok(Some(no(Some(Code::Cannot), "COMPRESS not supported")))
            }
            C::GetQuota { .. } | C::GetQuotaRoot { .. } if self.ctx.cfg.quota.is_none() => {
                return Ok(Some(bad("QUOTA not offered: no quota is configured")))
            }
            _ => {}
        }
        let Some(account) = self.account.clone() else {
            return Ok(Some(match body {
                C::Login { user, password } => self.login(&user, &password).await,
                C::Authenticate { mechanism, initial } => {
                    self.authenticate(tag, &mechanism, initial).await?
                }
                _ => bad("log in first"),
            }));
        };
        let reply = match body {
            C::Login { .. } | C::Authenticate { .. } => bad("already logged in"),
            C::Select { mailbox, condstore } => {
                self.select(&account, &mailbox, condstore, false).await
            }
            C::Examine { mailbox, condstore } => {
                self.select(&account, &mailbox, condstore, true).await
            }
            C::Create { mailbox, .. } => {
                let st = self.ctx.store.clone();
                match blocking(move || st.create_mailbox(&account, &mailbox)).await {
                    Ok(()) => ok("CREATE completed"),
                    Err(e) => store_err(e),
                }
            }
            C::Delete { mailbox } => {
                let st = self.ctx.store.clone();
                match blocking(move || st.delete_mailbox(&account, &mailbox)).await {
                    Ok(()) => ok("DELETE completed"),
                    Err(e) => store_err(e),
                }
            }
            C::Rename { from, to } => {
                let st = self.ctx.store.clone();
                match blocking(move || st.rename_mailbox(&account, &from, &to)).await {
                    Ok(()) => ok("RENAME completed"),
                    Err(e) => store_err(e),
                }
            }
            C::Subscribe { mailbox } => self.subscribe(&account, mailbox, true).await,
            C::Unsubscribe { mailbox } => self.subscribe(&account, mailbox, false).await,
            C::List(l) => self.list(&account, l, false).await,
            C::Lsub { reference, pattern } => {
                let l = ListCommand {
                    reference,
                    patterns: vec![pattern],
                    select: vec!["SUBSCRIBED".into()],
                    ..ListCommand::default()
                };
                self.list(&account, l, true).await
            }
            C::Status { mailbox, items } => self.status(&account, &mailbox, &items).await,
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                if !self.quota_allows(&account, message.len() as u64).await {
                    return Ok(Some(no(Some(Code::OverQuota), "mailbox full: over quota")));
                }
                let st = self.ctx.store.clone();
                let flags = flag_strings(&flags);
                let date = date.map(|d| d.unix_seconds());
                match blocking(move || st.append(&account, &mailbox, &message, &flags, date)).await
                {
                    Ok((v, uid)) => ok_code(
                        Code::AppendUid {
                            uid_validity: v,
                            uids: vec![uid],
                        },
                        "APPEND completed",
                    ),
                    Err(StoreError::NoSuchMailbox(_)) => {
                        no(Some(Code::TryCreate), "no such mailbox")
                    }
                    Err(e) => store_err(e),
                }
            }
            C::Enable { capabilities } => {
                let mut on = Vec::new();
                for c in &capabilities {
                    if c.eq_ignore_ascii_case("CONDSTORE") {
                        self.condstore = true;
                        on.push("CONDSTORE");
                    }
                }
                response::enabled(&mut self.out, &on);
                ok("ENABLE completed")
            }
            C::Namespace => {
                response::namespace(&mut self.out, "", store::DELIMITER);
                ok("NAMESPACE completed")
            }
            C::GetQuotaRoot { mailbox } => {
                let (st, a, m) = (self.ctx.store.clone(), account.clone(), mailbox.clone());
                match blocking(move || st.status(&a, &m)).await {
                    Ok(_) => {
                        response::quota_root(&mut self.out, &mailbox, &[""]);
                        self.write_quota(&account).await;
                        ok("GETQUOTAROOT completed")
                    }
                    Err(e) => store_err(e),
                }
            }
            C::GetQuota { root } if root.is_empty() => {
                self.write_quota(&account).await;
                ok("GETQUOTA completed")
            }
            C::GetQuota { .. } => no(Some(Code::Nonexistent), "no such quota root"),
            C::GetMetadata {
                mailbox, entries, ..
            } => {
                let map = self.ctx.metadata.lock().unwrap_or_else(|p| p.into_inner());
                let values: Vec<(String, Option<Vec<u8>>)> = entries
                    .iter()
                    .map(|e| {
                        let k = (account.clone(), mailbox.clone(), e.to_ascii_lowercase());
                        (e.clone(), map.get(&k).cloned())
                    })
                    .collect();
                drop(map);
                let refs: Vec<(&str, Option<&[u8]>)> = values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_deref()))
                    .collect();
                if !refs.is_empty() {
                    response::metadata(&mut self.out, &mailbox, &refs);
                }
                ok("GETMETADATA completed")
            }
            C::SetMetadata { mailbox, entries } => self.set_metadata(&account, mailbox, entries),
            C::Idle => return self.idle(tag, &account).await.map(|_| None),
            // Selected state only from here.
            body => {
                if self.selected.is_none() {
                    bad("no mailbox selected")
                } else {
                    self.selected_command(&account, body).await?
                }
            }
        };
        Ok(Some(reply))
    }

    async fn selected_command(
        &mut self,
        account: &str,
        body: CommandBody,
    ) -> Result<Reply, ImapError> {
        use CommandBody as C;
        Ok(match body {
            C::Close => {
                if let Some(sel) = self.selected.take() {
                    if !sel.read_only {
                        let (st, a) = (self.ctx.store.clone(), account.to_owned());
                        // A failed silent expunge still closes the mailbox.
                        let _ = blocking(move || st.expunge(&a, &sel.name, None)).await;
                    }
                }
                ok("CLOSE completed")
            }
            C::Unselect => {
                self.selected = None;
                ok("UNSELECT completed")
            }
            C::Expunge => self.expunge(account, None).await,
            C::UidExpunge { set } => self.expunge(account, Some(set)).await,
            C::Search {
                uid,
                charset,
                criteria,
            } => self.search(account, uid, charset, &criteria).await,
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
            } => {
                self.fetch(account, uid, &set, &items, changed_since)
                    .await?
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                self.store(account, uid, &set, unchanged_since, mode, silent, &flags)
                    .await
            }
            C::Copy { uid, set, mailbox } => self.copy(account, uid, &set, &mailbox, false).await,
            C::Move { uid, set, mailbox } => self.copy(account, uid, &set, &mailbox, true).await,
            _ => bad("command not valid in this state"),
        })
    }

    // ---- authentication ----

    async fn auth_fail(&mut self, code: Code, text: &str) -> Reply {
        self.auth_failures += 1;
        tracing::info!("login failed: {text}");
        // Slows down password guessing without holding anything but a timer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            response::untagged(&mut self.out, Status::Bye, None, "too many failed logins");
            self.logout = true;
        }
        no(Some(code), text)
    }

    /// Check a password login; with an identity it must name its account.
    async fn password_login(
        &mut self,
        authz: Option<&[u8]>,
        user: &[u8],
        password: &[u8],
    ) -> Reply {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return self
                .auth_fail(Code::AuthenticationFailed, "invalid credentials")
                .await;
        };
        if let Some(id) = &self.peer.identity {
            // Checked before the password, so that a login for another
            // address never reaches account auto-creation.
            let (accounts, u) = (self.ctx.accounts.clone(), user.to_owned());
            let named = tokio::task::spawn_blocking(move || accounts.account_for(&u)).await;
            if !matches!(named, Ok(Ok(Some(ref a))) if *a == id.account) {
                return self
                    .auth_fail(
                        Code::AuthenticationFailed,
                        "this client key belongs to another account",
                    )
                    .await;
            }
        }
        let client = self.peer.client_addr.map(|a| a.ip());
        let found = match self.ctx.logins.check(client, user, password).await {
            Ok(Some(acc)) => match authz.filter(|z| !z.is_empty()) {
                None => Ok((Some(acc), None)),
                Some(z) => {
                    let accounts = self.ctx.accounts.clone();
                    let z = String::from_utf8_lossy(z).into_owned();
                    match tokio::task::spawn_blocking(move || accounts.account_for(&z)).await {
                        Ok(Ok(z)) => Ok((Some(acc), Some(z))),
                        Ok(Err(e)) => Err(LoginError::Account(e)),
                        Err(_) => Err(LoginError::Gone),
                    }
                }
            },
            Ok(None) => Ok((None, None)),
            Err(e) => Err(e),
        };
        let account = match found {
            Ok((Some(acc), None)) => acc,
            Ok((Some(acc), Some(z))) if z.as_deref() == Some(acc.as_str()) => acc,
            Ok((Some(_), Some(_))) => {
                return self
                    .auth_fail(Code::AuthorizationFailed, "authorization identity differs")
                    .await
            }
            Ok((None, _)) => {
                return self
                    .auth_fail(Code::AuthenticationFailed, "invalid credentials")
                    .await
            }
            Err(e) if e.is_limit() => {
                return self
                    .auth_fail(Code::Unavailable, "too many failed logins, try again later")
                    .await
            }
            Err(LoginError::Account(e)) => {
                tracing::error!("accounts: {e}");
                return no(
                    Some(Code::Unavailable),
                    "accounts unavailable, try again later",
                );
            }
            Err(e) => {
                tracing::error!("accounts task: {e}");
                return no(Some(Code::ServerBug), "internal error");
            }
        };
        if let Some(id) = &self.peer.identity {
            if id.account != account {
                return self
                    .auth_fail(
                        Code::AuthenticationFailed,
                        "this client key belongs to another account",
                    )
                    .await;
            }
        }
        match self.start_account(&account).await {
            Ok(()) => self.logged_in_reply(),
            Err(e) => store_err(e),
        }
    }

    fn logged_in_reply(&self) -> Reply {
        ok_code(
            Code::Capability(self.caps().iter().map(|s| s.to_string()).collect()),
            "logged in",
        )
    }

    async fn login(&mut self, user: &[u8], password: &[u8]) -> Reply {
        self.password_login(None, user, password).await
    }

    async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Result<Reply, ImapError> {
        let mech = mechanism.to_ascii_uppercase();
        if mech != "PLAIN" && mech != "EXTERNAL" {
            return Ok(no(Some(Code::Cannot), "unsupported mechanism"));
        }
        let data = match initial {
            Some(d) => d,
            None => {
                response::continuation(&mut self.out, "");
                self.flush().await?;
                loop {
                    match parser::parse_auth_line(&self.buf, &self.ctx.limits) {
                        AuthLine::Response { data, consumed } => {
                            self.consume(consumed);
                            break data;
                        }
                        AuthLine::Cancel { consumed } => {
                            self.consume(consumed);
                            return Ok(bad("AUTHENTICATE cancelled"));
                        }
                        AuthLine::Bad { consumed } => {
                            self.consume(consumed);
                            return Ok(bad("invalid base64"));
                        }
                        AuthLine::Fatal => {
                            return Err(ImapError::Fatal("AUTHENTICATE line too long".into()))
                        }
                        AuthLine::NeedMore => self.read_more(UNAUTH_TIMEOUT).await?,
                    }
                }
            }
        };
        let _ = tag;
        if mech == "PLAIN" {
            let Some((z, c, p)) = parser::sasl_plain(&data) else {
                return Ok(bad("malformed PLAIN response"));
            };
            return Ok(self.password_login(Some(&z), &c, &p).await);
        }
        // EXTERNAL: the client key the front door verified.
        let Some(id) = self.peer.identity.clone() else {
            return Ok(self
                .auth_fail(Code::AuthenticationFailed, "no client key identity")
                .await);
        };
        let authz = String::from_utf8_lossy(&data);
        if !(authz.is_empty()
            || authz.eq_ignore_ascii_case(&id.login)
            || authz.eq_ignore_ascii_case(&id.account))
        {
            return Ok(self
                .auth_fail(
                    Code::AuthorizationFailed,
                    "authorization identity is not the key's login",
                )
                .await);
        }
        Ok(match self.start_account(&id.account).await {
            Ok(()) => self.logged_in_reply(),
            Err(e) => store_err(e),
        })
    }

    // ---- mailboxes ----

    async fn select(
        &mut self,
        account: &str,
        mailbox: &str,
        condstore: bool,
        read_only: bool,
    ) -> Reply {
        // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
        self.selected = None;
        if condstore {
            self.condstore = true;
        }
        let (st, a, m) = (
            self.ctx.store.clone(),
            account.to_owned(),
            mailbox.to_owned(),
        );
        let res = blocking(move || Ok((st.status(&a, &m)?, st.messages(&a, &m)?))).await;
        let (status, msgs) = match res {
            Ok(x) => x,
            Err(e) => return store_err(e),
        };
        let system = [
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        response::flags(&mut self.out, &system);
        let pf = Code::PermanentFlags {
            flags: if read_only {
                Vec::new()
            } else {
                system.to_vec()
            },
            allow_new: !read_only,
        };
        response::untagged(&mut self.out, Status::Ok, Some(&pf), "flags permitted");
        response::exists(&mut self.out, u32::try_from(msgs.len()).unwrap_or(u32::MAX));
        response::recent(&mut self.out, 0);
        if let Some(i) = msgs.iter().position(|m| !m.flags.contains("\\Seen")) {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            response::untagged(
                &mut self.out,
                Status::Ok,
                Some(&Code::Unseen(n)),
                "first unseen",
            );
        }
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::UidValidity(status.uidvalidity)),
            "UIDs valid",
        );
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::UidNext(status.uidnext)),
            "predicted next UID",
        );
        response::untagged(
            &mut self.out,
            Status::Ok,
            Some(&Code::HighestModSeq(status.highestmodseq)),
            "highest",
        );
        self.selected = Some(Selected {
            name: status.name.clone(),
            read_only,
            msgs: msgs.iter().map(|m| (m.uid, m.modseq)).collect(),
        });
        if read_only {
            ok_code(Code::ReadOnly, "EXAMINE completed")
        } else {
            ok_code(Code::ReadWrite, "SELECT completed")
        }
    }

    async fn list(&mut self, account: &str, l: ListCommand, lsub: bool) -> Reply {
        let st = self.ctx.store.clone();
        let a = account.to_owned();
        let boxes = match blocking(move || Ok(st.list_mailboxes(&a))).await {
            Ok(b) => b,
            Err(e) => return store_err(e),
        };
        let only_subscribed = l.select.iter().any(|s| s == "SUBSCRIBED");
        let only_special = l.select.iter().any(|s| s == "SPECIAL-USE");
        let ret_subscribed = l.returns.iter().any(|s| s == "SUBSCRIBED") || only_subscribed;
        let ret_special = !lsub;
        if l.patterns.len() == 1 && l.patterns[0].is_empty() {
            // RFC 3501 §6.3.8: the delimiter and root.
            response::list(
                &mut self.out,
                lsub,
                &["\\Noselect"],
                Some(store::DELIMITER),
                "",
            );
            return ok("LIST completed");
        }
        let pats: Vec<String> = l
            .patterns
            .iter()
            .map(|p| store::canonical_mailbox(&format!("{}{}", l.reference, p)))
            .collect();
        let prefix_of = |n: &str| format!("{n}{}", store::DELIMITER);
        for b in &boxes {
            if !pats
                .iter()
                .any(|p| wildmatch(p.as_bytes(), b.name.as_bytes()))
            {
                continue;
            }
            if only_subscribed && !b.subscribed {
                continue;
            }
            let su = special_use(&b.name);
            if only_special && su.is_none() {
                continue;
            }
            let pre = prefix_of(&b.name);
            let children = boxes.iter().any(|c| c.name.starts_with(&pre));
            let mut attrs = vec![if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if ret_subscribed && b.subscribed && !lsub {
                attrs.push("\\Subscribed");
            }
            if let (true, Some(su)) = (ret_special, su) {
                attrs.push(su);
            }
            response::list(&mut self.out, lsub, &attrs, Some(store::DELIMITER), &b.name);
            if let Some(items) = &l.return_status {
                let vals = self.status_values(account, &b.name, items, b).await;
                response::status(&mut self.out, &b.name, &vals);
            }
        }
        ok(if lsub {
            "LSUB completed"
        } else {
            "LIST completed"
        })
    }

    async fn subscribe(&mut self, account: &str, mailbox: String, on: bool) -> Reply {
        let (st, a) = (self.ctx.store.clone(), account.to_owned());
        match blocking(move || st.set_subscribed(&a, &mailbox, on)).await {
            Ok(()) => ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(e) => store_err(e),
        }
    }

    async fn status_values(
        &self,
        account: &str,
        name: &str,
        items: &[StatusItem],
        st: &store::MailboxStatus,
    ) -> Vec<(StatusItem, u64)> {
        let mut size = 0;
        if items.contains(&StatusItem::Size) {
            let (s, a, m) = (self.ctx.store.clone(), account.to_owned(), name.to_owned());
            if let Ok(msgs) = blocking(move || s.messages(&a, &m)).await {
                size = msgs.iter().map(|m| m.size).sum();
            }
        }
        items
            .iter()
            .map(|i| {
                let v = match i {
                    StatusItem::Messages => u64::from(st.exists),
                    StatusItem::Recent => 0,
                    StatusItem::UidNext => u64::from(st.uidnext),
                    StatusItem::UidValidity => u64::from(st.uidvalidity),
                    StatusItem::Unseen => u64::from(st.unseen),
                    StatusItem::HighestModSeq => st.highestmodseq,
                    StatusItem::Size => size,
                };
                (*i, v)
            })
            .collect()
    }

    async fn status(&mut self, account: &str, mailbox: &str, items: &[StatusItem]) -> Reply {
        let (s, a, m) = (
            self.ctx.store.clone(),
            account.to_owned(),
            mailbox.to_owned(),
        );
        let st = match blocking(move || s.status(&a, &m)).await {
            Ok(st) => st,
            Err(e) => return store_err(e),
        };
        let vals = self.status_values(account, &st.name, items, &st).await;
        response::status(&mut self.out, &st.name, &vals);
        ok("STATUS completed")
    }

    fn set_metadata(
        &mut self,
        account: &str,
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Reply {
        let mut map = self.ctx.metadata.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in entries {
            let key = (account.to_owned(), mailbox.clone(), k.to_ascii_lowercase());
            if !key.2.starts_with("/private/") && !key.2.starts_with("/shared/") {
                return bad("entry must start with /private/ or /shared/");
            }
            if key.2.starts_with("/shared/") {
                return no(Some(Code::NoPerm), "shared entries are read-only");
            }
            match v {
                None => {
                    map.remove(&key);
                }
                Some(v) => {
                    let count = map.keys().filter(|k| k.0 == account).count();
                    if !map.contains_key(&key) && count >= MAX_METADATA_ENTRIES {
                        return no(
                            Some(Code::Other("METADATA TOOMANY".into())),
                            "too many entries",
                        );
                    }
                    map.insert(key, v);
                }
            }
        }
        ok("SETMETADATA completed")
    }

    // ---- selected state ----

    /// The (MSN, UID) pairs a set names, or a BAD reply.
    fn targets(&self, uid: bool, set: &SeqSet) -> Result<Vec<(u32, u32)>, Reply> {
        let Some(sel) = &self.selected else {
            return Err(bad("no mailbox selected"));
        };
        if uid {
            let uids = sel.uids();
            Ok(set
                .uid_indices(&uids)
                .into_iter()
                .filter_map(|i| Some((u32::try_from(i + 1).ok()?, *uids.get(i)?)))
                .collect())
        } else {
            let count = u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX);
            match set.msns(count) {
                Ok(m) => Ok(m
                    .into_iter()
                    .filter_map(|n| {
                        let i = usize::try_from(n).ok()?.checked_sub(1)?;
                        Some((n, sel.msgs.get(i)?.0))
                    })
                    .collect()),
                Err(e) => Err(bad(&e.to_string())),
            }
        }
    }

    fn sel_name(&self) -> String {
        self.selected
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    async fn fresh(&self, account: &str) -> Result<Vec<MessageMeta>, StoreError> {
        let (s, a, m) = (self.ctx.store.clone(), account.to_owned(), self.sel_name());
        blocking(move || s.messages(&a, &m)).await
    }

    /// Report changes made elsewhere: EXPUNGE (when allowed), flag changes,
    /// new messages.
    async fn sync(&mut self, expunge_ok: bool) {
        let Some(account) = self.account.clone() else {
            return;
        };
        let Ok(fresh) = self.fresh(&account).await else {
            return;
        };
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let out = &mut self.out;
        if expunge_ok {
            let mut kept: Vec<(u32, u64)> = Vec::with_capacity(sel.msgs.len());
            for &(uid, ms) in &sel.msgs {
                if find(&fresh, uid).is_some() {
                    kept.push((uid, ms));
                } else {
                    response::expunge(out, u32::try_from(kept.len() + 1).unwrap_or(u32::MAX));
                }
            }
            sel.msgs = kept;
        }
        for (i, (uid, ms)) in sel.msgs.iter_mut().enumerate() {
            let Some(m) = find(&fresh, *uid) else {
                continue;
            };
            if m.modseq != *ms {
                *ms = m.modseq;
                let flags = to_flags(&m.flags);
                let mut items = vec![FetchData::Uid(m.uid), FetchData::Flags(&flags)];
                if condstore {
                    items.push(FetchData::ModSeq(m.modseq));
                }
                response::fetch(out, u32::try_from(i + 1).unwrap_or(u32::MAX), &items);
            }
        }
        let last = sel.msgs.last().map(|m| m.0).unwrap_or(0);
        let start = fresh.partition_point(|m| m.uid <= last);
        if start < fresh.len() {
            sel.msgs
                .extend(fresh[start..].iter().map(|m| (m.uid, m.modseq)));
            response::exists(out, u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX));
        }
    }

    async fn expunge(&mut self, account: &str, set: Option<SeqSet>) -> Reply {
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        if sel.read_only {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let uids = set.map(|s| s.uids(&sel.uids()));
        let (st, a, m) = (self.ctx.store.clone(), account.to_owned(), sel.name.clone());
        match blocking(move || st.expunge(&a, &m, uids.as_deref())).await {
            // The EXPUNGE responses come from the sync that follows.
            Ok(_) => ok("EXPUNGE completed"),
            Err(e) => store_err(e),
        }
    }

    async fn search(
        &mut self,
        account: &str,
        uid: bool,
        charset: Option<String>,
        key: &SearchKey,
    ) -> Reply {
        if let Some(c) = &charset {
            if !c.eq_ignore_ascii_case("UTF-8") && !c.eq_ignore_ascii_case("US-ASCII") {
                return no(
                    Some(Code::Other("BADCHARSET (US-ASCII UTF-8)".into())),
                    "unsupported charset",
                );
            }
        }
        let fresh = match self.fresh(account).await {
            Ok(f) => f,
            Err(e) => return store_err(e),
        };
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let needs_text = search::needs_text(key);
        let mb = search::Mailbox {
            count: u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX),
            max_uid: sel.msgs.last().map(|m| m.0).unwrap_or(0),
            now: store::unix_now(),
        };
        let snapshot = sel.msgs.clone();
        let name = sel.name.clone();
        let mut found = Vec::new();
        let mut max_modseq = 0;
        for (i, (u, _)) in snapshot.iter().enumerate() {
            let Some(m) = find(&fresh, *u) else {
                continue;
            };
            let raw = if needs_text {
                let (st, a, n, u) = (self.ctx.store.clone(), account.to_owned(), name.clone(), *u);
                match blocking(move || st.read(&a, &n, u)).await {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            } else {
                Vec::new()
            };
            let flags = to_flags(&m.flags);
            let msn = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let msg = search::Message {
                msn,
                uid: m.uid,
                flags: &flags,
                internal_date: m.internal_date,
                size: m.size,
                modseq: m.modseq,
                raw: &raw,
            };
            if search::matches(key, &msg, &mb) {
                found.push(if uid { m.uid } else { msn });
                max_modseq = max_modseq.max(m.modseq);
            }
        }
        let modseq = search::uses_modseq(key).then_some(max_modseq);
        response::search(&mut self.out, &found, modseq);
        ok("SEARCH completed")
    }

    async fn fetch(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        items: &[FetchItem],
        changed_since: Option<u64>,
    ) -> Result<Reply, ImapError> {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return Ok(r),
        };
        if changed_since.is_some() || items.contains(&FetchItem::ModSeq) {
            self.condstore = true;
        }
        let want_modseq = changed_since.is_some() || items.contains(&FetchItem::ModSeq);
        let read_only = self.selected.as_ref().is_none_or(|s| s.read_only);
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    FetchItem::Rfc822
                        | FetchItem::Rfc822Text
                        | FetchItem::BodySection { peek: false, .. }
                )
            });
        let name = self.sel_name();
        let mut fresh = match self.fresh(account).await {
            Ok(f) => f,
            Err(e) => return Ok(store_err(e)),
        };
        if let Some(cs) = changed_since {
            // RFC 7162 §3.1.4.1: only messages changed after CHANGEDSINCE.
            fresh.retain(|m| m.modseq > cs);
        }
        let mut seen_now = std::collections::HashSet::new();
        if sets_seen {
            let unseen: Vec<u32> = targets
                .iter()
                .filter(|(_, u)| find(&fresh, *u).is_some_and(|m| !m.flags.contains("\\Seen")))
                .map(|(_, u)| *u)
                .collect();
            if !unseen.is_empty() {
                let (st, a, n) = (self.ctx.store.clone(), account.to_owned(), name.clone());
                let res = blocking(move || {
                    st.store_flags(&a, &n, &unseen, FlagOp::Add, &["\\Seen".to_owned()], None)
                })
                .await;
                if let Ok(r) = res {
                    for m in r.changed {
                        seen_now.insert(m.uid);
                        if let Ok(i) = fresh.binary_search_by_key(&m.uid, |x| x.uid) {
                            fresh[i] = m.clone();
                        }
                        if let Some(sel) = self.selected.as_mut() {
                            if let Ok(i) = sel.msgs.binary_search_by_key(&m.uid, |x| x.0) {
                                sel.msgs[i].1 = m.modseq;
                            }
                        }
                    }
                }
            }
        }
        let needs_raw = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Envelope
                    | FetchItem::Rfc822
                    | FetchItem::Rfc822Header
                    | FetchItem::Rfc822Text
                    | FetchItem::Body
                    | FetchItem::BodyStructure
                    | FetchItem::BodySection { .. }
            )
        });
        let needs_parts = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Body
                    | FetchItem::BodyStructure
                    | FetchItem::Rfc822Text
                    | FetchItem::BodySection { .. }
            )
        });
        for (msn, u) in targets {
            let Some(m) = find(&fresh, u) else {
                continue;
            };
            let raw = if needs_raw {
                let (st, a, n) = (self.ctx.store.clone(), account.to_owned(), name.clone());
                match blocking(move || st.read(&a, &n, u)).await {
                    Ok(r) => r,
                    Err(StoreError::NoSuchMessage(_)) => continue,
                    Err(e) => return Ok(store_err(e)),
                }
            } else {
                Vec::new()
            };
            let root = needs_parts.then(|| mime::parse(&raw));
            let header_end = mime::parse_header_end(&raw);
            let flags = to_flags(&m.flags);
            // Owned values first, then the borrowed FetchData list.
            let mut envelope = None;
            let mut sections: Vec<Option<std::borrow::Cow<'_, [u8]>>> = Vec::new();
            for it in items {
                match it {
                    FetchItem::Envelope => {
                        envelope = Some(mime::Envelope::from_header(
                            raw.get(..header_end).unwrap_or_default(),
                        ))
                    }
                    FetchItem::BodySection { section, .. } => {
                        sections.push(root.as_ref().and_then(|r| mime::section(&raw, r, section)))
                    }
                    _ => {}
                }
            }
            let mut data: Vec<FetchData<'_>> = Vec::with_capacity(items.len() + 3);
            if uid || items.contains(&FetchItem::Uid) {
                data.push(FetchData::Uid(m.uid));
            }
            let mut flags_done = false;
            let mut sec_i = 0;
            for it in items {
                match it {
                    FetchItem::Uid => {}
                    FetchItem::Flags => {
                        flags_done = true;
                        data.push(FetchData::Flags(&flags));
                    }
                    FetchItem::InternalDate => data.push(FetchData::InternalDate(
                        DateTime::from_unix_seconds(m.internal_date),
                    )),
                    FetchItem::Rfc822Size => data.push(FetchData::Rfc822Size(m.size)),
                    FetchItem::ModSeq => {}
                    FetchItem::Envelope => {
                        if let Some(e) = &envelope {
                            data.push(FetchData::Envelope(e));
                        }
                    }
                    FetchItem::Rfc822 => data.push(FetchData::Rfc822(&raw)),
                    FetchItem::Rfc822Header => data.push(FetchData::Rfc822Header(
                        raw.get(..header_end).unwrap_or_default(),
                    )),
                    FetchItem::Rfc822Text => data.push(FetchData::Rfc822Text(
                        raw.get(header_end..).unwrap_or_default(),
                    )),
                    FetchItem::Body => {
                        if let Some(r) = &root {
                            data.push(FetchData::Body { raw: &raw, part: r });
                        }
                    }
                    FetchItem::BodyStructure => {
                        if let Some(r) = &root {
                            data.push(FetchData::BodyStructure { raw: &raw, part: r });
                        }
                    }
                    FetchItem::BodySection {
                        section, partial, ..
                    } => {
                        let d = sections.get(sec_i).and_then(|s| s.as_deref());
                        sec_i += 1;
                        let (d, origin) = match partial {
                            Some((start, len)) => {
                                (d.map(|d| mime::partial(d, *start, *len)), Some(*start))
                            }
                            None => (d, None),
                        };
                        data.push(FetchData::BodySection {
                            section,
                            origin,
                            data: Some(d.unwrap_or_default()),
                        });
                    }
                }
            }
            if !flags_done && seen_now.contains(&m.uid) {
                data.push(FetchData::Flags(&flags));
            }
            if want_modseq || (self.condstore && seen_now.contains(&m.uid)) {
                data.push(FetchData::ModSeq(m.modseq));
            }
            response::fetch(&mut self.out, msn, &data);
            drop(data);
            if self.out.len() > OUT_HIGH_WATER {
                self.flush().await?;
            }
        }
        Ok(ok("FETCH completed"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: &[Flag],
    ) -> Reply {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if self.selected.as_ref().is_none_or(|s| s.read_only) {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let op = match mode {
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
            StoreMode::Replace => FlagOp::Replace,
        };
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        let (st, a, n, f) = (
            self.ctx.store.clone(),
            account.to_owned(),
            self.sel_name(),
            flag_strings(flags),
        );
        let res =
            match blocking(move || st.store_flags(&a, &n, &uids, op, &f, unchanged_since)).await {
                Ok(r) => r,
                Err(e) => return store_err(e),
            };
        let condstore = self.condstore;
        for m in &res.changed {
            let Some(sel) = self.selected.as_mut() else {
                break;
            };
            let Ok(i) = sel.msgs.binary_search_by_key(&m.uid, |x| x.0) else {
                continue;
            };
            sel.msgs[i].1 = m.modseq;
            // RFC 7162 §3.1.3: with UNCHANGEDSINCE, FLAGS come back even when silent.
            if !silent || unchanged_since.is_some() {
                let fl = to_flags(&m.flags);
                let mut items = Vec::with_capacity(3);
                if uid {
                    items.push(FetchData::Uid(m.uid));
                }
                items.push(FetchData::Flags(&fl));
                if condstore {
                    items.push(FetchData::ModSeq(m.modseq));
                }
                response::fetch(
                    &mut self.out,
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    &items,
                );
            }
        }
        if !silent {
            // Messages named but not changed (flags already so) still get
            // their FLAGS, as RFC 3501 §6.4.6 describes.
            let changed: std::collections::HashSet<u32> =
                res.changed.iter().map(|m| m.uid).collect();
            let skipped: std::collections::HashSet<u32> = res.modified.iter().copied().collect();
            let rest: Vec<(u32, u32)> = targets
                .iter()
                .filter(|t| !changed.contains(&t.1) && !skipped.contains(&t.1))
                .copied()
                .collect();
            if !rest.is_empty() {
                if let Ok(fresh) = self.fresh(account).await {
                    for (msn, u) in rest {
                        if let Some(m) = find(&fresh, u) {
                            let fl = to_flags(&m.flags);
                            let mut items = Vec::with_capacity(3);
                            if uid {
                                items.push(FetchData::Uid(u));
                            }
                            items.push(FetchData::Flags(&fl));
                            if condstore {
                                items.push(FetchData::ModSeq(m.modseq));
                            }
                            response::fetch(&mut self.out, msn, &items);
                        }
                    }
                }
            }
        }
        if res.modified.is_empty() {
            ok("STORE completed")
        } else {
            let nums: Vec<u32> = if uid {
                res.modified.clone()
            } else {
                let sel = self.selected.as_ref();
                res.modified
                    .iter()
                    .filter_map(|u| sel.and_then(|s| s.msn_of(*u)))
                    .collect()
            };
            ok_code(
                Code::Modified(format_numbers(&nums)),
                "conditional STORE failed",
            )
        }
    }

    async fn copy(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        to: &str,
        remove: bool,
    ) -> Reply {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if remove && self.selected.as_ref().is_none_or(|s| s.read_only) {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        if !remove && self.ctx.cfg.quota.is_some() {
            let (st, a, n, u) = (
                self.ctx.store.clone(),
                account.to_owned(),
                self.sel_name(),
                {
                    let mut u = uids.clone();
                    u.sort_unstable();
                    u
                },
            );
            let adding = blocking(move || {
                Ok(st
                    .messages(&a, &n)?
                    .iter()
                    .filter(|m| u.binary_search(&m.uid).is_ok())
                    .map(|m| m.size)
                    .sum::<u64>())
            })
            .await
            .unwrap_or(0);
            if !self.quota_allows(account, adding).await {
                return no(Some(Code::OverQuota), "mailbox full: over quota");
            }
        }
        let (st, a, n, t) = (
            self.ctx.store.clone(),
            account.to_owned(),
            self.sel_name(),
            to.to_owned(),
        );
        let res = blocking(move || {
            if remove {
                st.move_messages(&a, &n, &uids, &t)
            } else {
                st.copy(&a, &n, &uids, &t)
            }
        })
        .await;
        let res = match res {
            Ok(r) => r,
            Err(StoreError::NoSuchMailbox(_)) => {
                return no(Some(Code::TryCreate), "no such target mailbox")
            }
            Err(e) => return store_err(e),
        };
        let verb = if remove { "MOVE" } else { "COPY" };
        if res.pairs.is_empty() {
            return ok(&format!("{verb} completed"));
        }
        let code = Code::CopyUid {
            uid_validity: res.uidvalidity,
            source: res.pairs.iter().map(|p| p.0).collect(),
            dest: res.pairs.iter().map(|p| p.1).collect(),
        };
        if remove {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            response::untagged(&mut self.out, Status::Ok, Some(&code), "moved");
            self.sync(true).await;
            ok("MOVE completed")
        } else {
            ok_code(code, "COPY completed")
        }
    }

    // ---- QUOTA (RFC 9208) ----

    /// Bytes used by `account`, from the store.
    async fn usage(&self, account: &str) -> u64 {
        let (st, a) = (self.ctx.store.clone(), account.to_owned());
        blocking(move || Ok(st.usage(&a))).await.unwrap_or(0)
    }

    /// May `adding` more bytes be stored for `account`?
    async fn quota_allows(&self, account: &str, adding: u64) -> bool {
        let Some(quota) = self.ctx.cfg.quota else {
            return true;
        };
        let used = self.usage(account).await;
        let fits = used.saturating_add(adding) <= quota;
        if !fits {
            tracing::info!(account, used, quota, adding, "over quota");
        }
        fits
    }

    /// `* QUOTA "" (STORAGE used limit)`, in KiB as RFC 9208 counts.
    async fn write_quota(&mut self, account: &str) {
        let quota = self.ctx.cfg.quota.unwrap_or(0);
        let used = self.usage(account).await;
        response::quota(&mut self.out, "", &[("STORAGE", used / 1024, quota / 1024)]);
    }

    // ---- IDLE ----

    async fn idle(&mut self, tag: &str, account: &str) -> Result<(), ImapError> {
        let rx = match &self.selected {
            Some(sel) => {
                let (st, a, n) = (self.ctx.store.clone(), account.to_owned(), sel.name.clone());
                blocking(move || Ok(st.subscribe(&a, &n))).await.ok()
            }
            None => None,
        };
        let mut rx = rx;
        // Anything that arrived before IDLE is reported right away.
        self.sync(true).await;
        response::continuation(&mut self.out, "idling");
        self.flush().await?;
        let deadline = Instant::now() + IDLE_TIMEOUT;
        loop {
            match parser::parse_idle_done(&self.buf, &self.ctx.limits) {
                IdleEnd::Done { consumed } => {
                    self.consume(consumed);
                    self.sync(true).await;
                    response::tagged(&mut self.out, tag, Status::Ok, None, "IDLE terminated");
                    return Ok(());
                }
                IdleEnd::Bad { consumed } => {
                    self.consume(consumed);
                    response::tagged(&mut self.out, tag, Status::Bad, None, "expected DONE");
                    return Ok(());
                }
                IdleEnd::Fatal => return Err(ImapError::Fatal("line too long in IDLE".into())),
                IdleEnd::NeedMore => {}
            }
            let changed = async {
                match rx.as_mut() {
                    Some(r) => {
                        if r.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let want = if self.buf.is_empty() {
                IDLE_READ
            } else {
                BUSY_READ
            };
            self.buf.reserve(want);
            tokio::select! {
                r = self.stream.read_buf(&mut self.buf) => {
                    match r {
                        Ok(0) => return Err(ImapError::Eof),
                        Ok(_) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ = changed => {
                    self.sync(true).await;
                    self.flush().await?;
                }
                _ = tokio::time::sleep(IDLE_KEEPALIVE) => {
                    response::untagged(&mut self.out, Status::Ok, None, "Still here");
                    self.flush().await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    response::untagged(&mut self.out, Status::Bye, None, "IDLE timed out; reconnect");
                    self.flush().await?;
                    self.logout = true;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildmatch_rfc3501() {
        assert!(wildmatch(b"*", b"INBOX"));
        assert!(wildmatch(b"*", b"a/b/c"));
        assert!(wildmatch(b"%", b"INBOX"));
        assert!(!wildmatch(b"%", b"a/b"));
        assert!(wildmatch(b"a/%", b"a/b"));
        assert!(!wildmatch(b"a/%", b"a/b/c"));
        assert!(wildmatch(b"a/*", b"a/b/c"));
        assert!(wildmatch(b"INBOX", b"INBOX"));
        assert!(!wildmatch(b"INBOX", b"INBOX/x"));
        assert!(wildmatch(b"%/x", b"INBOX/x"));
        assert!(!wildmatch(b"", b"INBOX"));
        assert!(wildmatch(b"*x*", b"abxcd"));
    }
}
