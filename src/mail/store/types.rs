//! The values the store hands out: messages, mailbox status, and the
//! results of STORE, COPY and MOVE.

use std::collections::BTreeSet;

/// What IMAP needs to know about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The message's UID in its mailbox.
    pub uid: u32,
    /// Flags as IMAP spells them (`\Seen`, `$Forwarded`, …), sorted.
    pub flags: BTreeSet<String>,
    /// Internal date, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Size in bytes of the stored message.
    pub size: u64,
    /// MODSEQ of the last change to this message (RFC 7162).
    pub modseq: u64,
    /// The blob holding the message's bytes.
    pub(super) blob: u64,
}

/// A mailbox's status (SELECT/STATUS/LIST data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The mailbox's name (`INBOX` canonical).
    pub name: String,
    /// UIDVALIDITY (RFC 3501 §2.3.1.1).
    pub uidvalidity: u32,
    /// The UID the next message will get.
    pub uidnext: u32,
    /// HIGHESTMODSEQ (RFC 7162).
    pub highestmodseq: u64,
    /// How many messages it holds.
    pub exists: u32,
    /// How many of them lack `\Seen`.
    pub unseen: u32,
    /// Whether it is subscribed (LSUB, LIST (SUBSCRIBED)).
    pub subscribed: bool,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `+FLAGS`: add these.
    Add,
    /// `-FLAGS`: remove these.
    Remove,
    /// `FLAGS`: exactly these.
    Replace,
}

/// Result of [`Store::store_flags`](super::Store::store_flags).
#[derive(Debug, Clone, Default)]
pub struct FlagsResult {
    /// Messages whose flags changed, with their new flags and MODSEQ.
    pub changed: Vec<MessageMeta>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE.
    pub modified: Vec<u32>,
}

/// Result of COPY/MOVE: the target's UIDVALIDITY and (source UID, new UID) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    /// The target mailbox's UIDVALIDITY.
    pub uidvalidity: u32,
    /// (source UID, new UID) for each message copied.
    pub pairs: Vec<(u32, u32)>,
}
