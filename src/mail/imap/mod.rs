//! The protocol core of the bundled IMAP server (RFC 3501 IMAP4rev1 plus the
//! extensions Delta Chat and common clients use; the list with sources is in
//! `docs/imap.md`).
//!
//! Everything here is pure and I/O-free: the session code reads bytes from
//! the connection, hands them to [`parser::parse_command`], acts on the typed
//! [`parser::Command`] against the mail store, and writes what
//! [`response`] encodes. [`mime`] derives ENVELOPE, BODYSTRUCTURE and
//! `BODY[section]` from raw message bytes; [`sequence`] maps sequence and UID
//! sets onto a mailbox's UID list; [`search`] decides whether one message
//! matches a SEARCH key.
//!
//! Invariants: no function here panics on any input, allocates in proportion
//! to a size the peer only claimed, or recurses deeper than its limit.

pub mod mime;
pub mod parser;
pub mod response;
pub mod search;
pub mod sequence;
pub mod server;
pub mod session;
pub mod types;

/// When a capability is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// In every state.
    Always,
    /// When a quota is configured (RFC 9208).
    WithQuota,
    /// Before login.
    BeforeLogin,
    /// Before login, on a connection with a client key identity.
    BeforeLoginWithIdentity,
}

/// The one capability list: what the session advertises (greeting,
/// CAPABILITY, the login reply), in this order, and what [`parser`]
/// understands. `COMPRESS=DEFLATE` is deliberately absent (Delta Chat turns
/// it on whenever offered, so it may only be offered once the session
/// compresses), as is `STARTTLS` (TLS ends at the front door).
pub const CAPABILITIES: &[(&str, Offered)] = &[
    ("IMAP4rev1", Offered::Always),
    ("LITERAL+", Offered::Always),
    ("IDLE", Offered::Always),
    ("UIDPLUS", Offered::Always),
    ("MOVE", Offered::Always),
    ("UNSELECT", Offered::Always),
    ("ENABLE", Offered::Always),
    ("ID", Offered::Always),
    ("NAMESPACE", Offered::Always),
    ("SPECIAL-USE", Offered::Always),
    ("LIST-EXTENDED", Offered::Always),
    ("LIST-STATUS", Offered::Always),
    ("CONDSTORE", Offered::Always),
    ("METADATA", Offered::Always),
    ("WITHIN", Offered::Always),
    ("QUOTA", Offered::WithQuota),
    ("QUOTA=RES-STORAGE", Offered::WithQuota),
    ("SASL-IR", Offered::BeforeLogin),
    ("AUTH=PLAIN", Offered::BeforeLogin),
    ("AUTH=EXTERNAL", Offered::BeforeLoginWithIdentity),
];

/// The capabilities a session offers, from [`CAPABILITIES`].
pub fn capabilities(quota: bool, logged_in: bool, identity: bool) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .filter(|(_, when)| match when {
            Offered::Always => true,
            Offered::WithQuota => quota,
            Offered::BeforeLogin => !logged_in,
            Offered::BeforeLoginWithIdentity => !logged_in && identity,
        })
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_by_state() {
        let after = capabilities(false, true, true);
        assert_eq!(after.first(), Some(&"IMAP4rev1"));
        assert!(!after
            .iter()
            .any(|c| c.starts_with("AUTH=") || *c == "QUOTA"));
        let before = capabilities(true, false, false);
        assert_eq!(
            &before[before.len() - 4..],
            ["QUOTA", "QUOTA=RES-STORAGE", "SASL-IR", "AUTH=PLAIN"]
        );
        assert_eq!(
            capabilities(false, false, true).last(),
            Some(&"AUTH=EXTERNAL")
        );
        assert!(!before
            .iter()
            .any(|c| *c == "STARTTLS" || c.starts_with("COMPRESS")));
    }
}
