//! The typed command ([`Command`], [`CommandBody`]) and the dispatch by
//! command name, with the arguments of the commands that have no family of
//! their own (LIST, STATUS, APPEND, COPY/MOVE, ID, ENABLE, ...).

use base64::Engine as _;

use super::{
    syntax, FetchItem, MetadataDepth, SearchKey, StoreMode, ID_MAX_FIELD, ID_MAX_PAIRS,
    ID_MAX_VALUE, P, R,
};
use crate::mail::imap::sequence::SeqSet;
use crate::mail::imap::types::{DateTime, Flag};

/// One tagged client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// The command and its arguments. Mailbox names are UTF-8 as sent (the
/// client's modified UTF-7 is kept as is); `INBOX` in any case becomes
/// `INBOX` (RFC 3501 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `initial` is the decoded SASL-IR initial response (`=` is empty).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Select {
        mailbox: String,
        condstore: bool,
    },
    Examine {
        mailbox: String,
        condstore: bool,
    },
    /// `special_use` from RFC 6154 `CREATE name (USE (\Sent))`.
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    List(ListCommand),
    Lsub {
        reference: String,
        pattern: String,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    /// UID EXPUNGE (RFC 4315 §2.1).
    UidExpunge {
        set: SeqSet,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
    },
    Store {
        uid: bool,
        set: SeqSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Idle,
    Enable {
        capabilities: Vec<String>,
    },
    /// `None` for `ID NIL`.
    Id {
        params: Option<Vec<(String, Option<String>)>>,
    },
    Namespace,
    GetMetadata {
        mailbox: String,
        max_size: Option<u64>,
        depth: MetadataDepth,
        entries: Vec<String>,
    },
    /// A `None` value removes the entry.
    SetMetadata {
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
    GetQuotaRoot {
        mailbox: String,
    },
    GetQuota {
        root: String,
    },
    Compress {
        mechanism: String,
    },
}

/// LIST with RFC 5258 selection and return options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCommand {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Upper-cased selection options (`SUBSCRIBED`, `SPECIAL-USE`, ...).
    pub select: Vec<String>,
    /// Upper-cased return options other than STATUS.
    pub returns: Vec<String>,
    /// RFC 5819 `RETURN (STATUS (...))`.
    pub return_status: Option<Vec<StatusItem>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    Size,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::Size => "SIZE",
        }
    }
}

impl P<'_> {
    pub(super) fn command(&mut self) -> R<Command> {
        self.check_line()?;
        let tag = self.tag()?;
        self.tag = Some(tag.clone());
        self.sp()?;
        let name = self.keyword()?;
        let body = self.body(&name)?;
        self.crlf()?;
        Ok(Command { tag, body })
    }

    pub(super) fn body(&mut self, name: &str) -> R<CommandBody> {
        use CommandBody as C;
        Ok(match name {
            "CAPABILITY" => C::Capability,
            "NOOP" => C::Noop,
            "LOGOUT" => C::Logout,
            "STARTTLS" => C::StartTls,
            "CHECK" => C::Check,
            "CLOSE" => C::Close,
            "UNSELECT" => C::Unselect,
            "EXPUNGE" => C::Expunge,
            "IDLE" => C::Idle,
            "NAMESPACE" => C::Namespace,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.keyword()?;
                let initial = if self.eat(b' ') {
                    let raw = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                    if raw == b"=" {
                        Some(Vec::new())
                    } else {
                        match base64::engine::general_purpose::STANDARD.decode(raw) {
                            Ok(d) if !raw.is_empty() => Some(d),
                            _ => return syntax("bad initial response"),
                        }
                    }
                } else {
                    None
                };
                C::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                C::Login { user, password }
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut condstore = false;
                if self.eat(b' ') {
                    for param in self.paren_list(|p| p.keyword())? {
                        match param.as_str() {
                            "CONDSTORE" => condstore = true,
                            _ => return syntax(format!("unsupported select parameter {param}")),
                        }
                    }
                }
                if name == "SELECT" {
                    C::Select { mailbox, condstore }
                } else {
                    C::Examine { mailbox, condstore }
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.eat(b' ') {
                    self.expect(b'(', "(")?;
                    if self.keyword()? != "USE" {
                        return syntax("unsupported CREATE parameter");
                    }
                    self.sp()?;
                    special_use = self.paren_list(|p| {
                        p.expect(b'\\', "\\")?;
                        Ok(format!("\\{}", p.atom()?))
                    })?;
                    self.expect(b')', ")")?;
                }
                C::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                match name {
                    "DELETE" => C::Delete { mailbox },
                    "SUBSCRIBE" => C::Subscribe { mailbox },
                    "UNSUBSCRIBE" => C::Unsubscribe { mailbox },
                    _ => C::GetQuotaRoot { mailbox },
                }
            }
            "GETQUOTA" => {
                self.sp()?;
                C::GetQuota {
                    root: self.astring_utf8()?,
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                C::Rename { from, to }
            }
            "LIST" => C::List(self.list()?),
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                C::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                C::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "SEARCH" => self.search(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy_move(name, false)?,
            "UID" => {
                self.sp()?;
                let sub = self.keyword()?;
                match sub.as_str() {
                    "SEARCH" => self.search(true)?,
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" | "MOVE" => self.copy_move(&sub, true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        C::UidExpunge {
                            set: self.seq_set()?,
                        }
                    }
                    _ => return syntax(format!("unknown UID command {sub}")),
                }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.eat(b' ') {
                    self.count()?;
                    capabilities.push(self.keyword()?);
                }
                if capabilities.is_empty() {
                    return syntax("ENABLE needs a capability");
                }
                C::Enable { capabilities }
            }
            "ID" => {
                self.sp()?;
                if self.peek_nil() {
                    self.pos += 3;
                    C::Id { params: None }
                } else {
                    let mut params = Vec::new();
                    self.expect(b'(', "(")?;
                    if !self.eat(b')') {
                        loop {
                            self.count()?;
                            // RFC 2971 §3.3: at most 30 pairs, fields of at
                            // most 30 octets, values of at most 1024.
                            if params.len() == ID_MAX_PAIRS {
                                return syntax("ID: more than 30 field-value pairs");
                            }
                            let k = self.string()?;
                            self.sp()?;
                            let v = self.nstring()?;
                            if k.len() > ID_MAX_FIELD
                                || v.as_ref().is_some_and(|v| v.len() > ID_MAX_VALUE)
                            {
                                return syntax("ID: field over 30 or value over 1024 octets");
                            }
                            let k = String::from_utf8_lossy(&k).into_owned();
                            let v = v.map(|v| String::from_utf8_lossy(&v).into_owned());
                            params.push((k, v));
                            if self.eat(b')') {
                                break;
                            }
                            self.sp()?;
                        }
                    }
                    C::Id {
                        params: Some(params),
                    }
                }
            }
            "GETMETADATA" => self.getmetadata()?,
            "SETMETADATA" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                self.expect(b'(', "(")?;
                let mut entries = Vec::new();
                loop {
                    self.count()?;
                    let entry = self.astring_utf8()?;
                    self.sp()?;
                    let value = self.nstring()?;
                    entries.push((entry, value));
                    if self.eat(b')') {
                        break;
                    }
                    self.sp()?;
                    // `(/private/devicetoken "1111" )`: a space before the
                    // closing parenthesis, as chatmail's clients send it and
                    // Dovecot accepts.
                    if self.eat(b')') {
                        break;
                    }
                }
                C::SetMetadata { mailbox, entries }
            }
            "COMPRESS" => {
                self.sp()?;
                C::Compress {
                    mechanism: self.keyword()?,
                }
            }
            _ => return syntax(format!("unknown command {name}")),
        })
    }

    pub(super) fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.paren_list(|p| {
            Ok(match p.keyword()?.as_str() {
                "MESSAGES" => StatusItem::Messages,
                "RECENT" => StatusItem::Recent,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                "SIZE" => StatusItem::Size,
                other => return syntax(format!("unknown status item {other}")),
            })
        })
    }

    pub(super) fn list(&mut self) -> R<ListCommand> {
        let mut cmd = ListCommand::default();
        self.sp()?;
        if self.peek()? == b'(' {
            cmd.select = self.paren_list(|p| p.keyword())?;
            self.sp()?;
        }
        cmd.reference = self.mailbox()?;
        self.sp()?;
        if self.peek()? == b'(' {
            cmd.patterns = self.paren_list(|p| p.list_mailbox())?;
        } else {
            cmd.patterns.push(self.list_mailbox()?);
        }
        if self.eat(b' ') {
            if self.keyword()? != "RETURN" {
                return syntax("expected RETURN");
            }
            self.sp()?;
            let mut status = None;
            let returns = self.paren_list(|p| {
                let k = p.keyword()?;
                if k == "STATUS" {
                    p.sp()?;
                    status = Some(p.status_items()?);
                }
                Ok(k)
            })?;
            cmd.returns = returns.into_iter().filter(|k| k != "STATUS").collect();
            cmd.return_status = status;
        }
        Ok(cmd)
    }

    pub(super) fn append(&mut self) -> R<CommandBody> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek()? == b'(' {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek()? == b'"' {
            let raw = self.quoted()?;
            date = Some(DateTime::parse(&raw).map_or_else(|| syntax("bad date-time"), Ok)?);
            self.sp()?;
        }
        let r = self.literal(self.lim.max_append)?;
        let message = self.buf.get(r).unwrap_or_default().to_vec();
        Ok(CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        })
    }

    pub(super) fn copy_move(&mut self, name: &str, uid: bool) -> R<CommandBody> {
        self.sp()?;
        let set = self.seq_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if name == "COPY" {
            CommandBody::Copy { uid, set, mailbox }
        } else {
            CommandBody::Move { uid, set, mailbox }
        })
    }
}
