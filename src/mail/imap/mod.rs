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
//! matches a SEARCH key. [`metadata`] keeps the METADATA entries (RFC
//! 5464): the server's shared ones and each account's private ones on disk.
//!
//! Invariants: no function here panics on any input, allocates in proportion
//! to a size the peer only claimed, or recurses deeper than its limit.

pub mod metadata;
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
    /// In chatmail mode (`mail.chatmail`), in every state.
    Chatmail,
    /// In chatmail mode with `imap_compress` on, until compression is on.
    Compress,
}

/// What decides the capabilities of one session at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer {
    /// A quota is configured.
    pub quota: bool,
    pub logged_in: bool,
    /// The connection has a client key identity.
    pub identity: bool,
    /// Chatmail mode is on.
    pub chatmail: bool,
    /// COMPRESS=DEFLATE may be started now.
    pub compress: bool,
}

/// The one capability list: what the session advertises (greeting,
/// CAPABILITY, the login reply), in this order, and what [`parser`]
/// understands. `COMPRESS=DEFLATE` (RFC 4978) only with `imap_compress` on
/// (Delta Chat turns it on whenever offered, and a compressed idle session
/// costs more: `docs/imap.md`); `XDELTAPUSH` and `XCHATMAIL` as chatmail's
/// Dovecot advertises them (`imap_capability = +XDELTAPUSH XCHATMAIL`; Delta
/// Chat reads them in `src/imap/client.rs`); never `STARTTLS` (TLS ends at
/// the front door).
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
    ("COMPRESS=DEFLATE", Offered::Compress),
    ("XDELTAPUSH", Offered::Chatmail),
    ("XCHATMAIL", Offered::Chatmail),
    ("QUOTA", Offered::WithQuota),
    ("QUOTA=RES-STORAGE", Offered::WithQuota),
    ("SASL-IR", Offered::BeforeLogin),
    ("AUTH=PLAIN", Offered::BeforeLogin),
    ("AUTH=EXTERNAL", Offered::BeforeLoginWithIdentity),
];

/// The capabilities a session offers, from [`CAPABILITIES`].
pub fn capabilities(o: Offer) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .filter(|(_, when)| match when {
            Offered::Always => true,
            Offered::WithQuota => o.quota,
            Offered::BeforeLogin => !o.logged_in,
            Offered::BeforeLoginWithIdentity => !o.logged_in && o.identity,
            Offered::Chatmail => o.chatmail,
            Offered::Compress => o.compress,
        })
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(quota: bool, logged_in: bool, identity: bool) -> Offer {
        Offer {
            quota,
            logged_in,
            identity,
            ..Offer::default()
        }
    }

    #[test]
    fn capabilities_by_state() {
        let after = capabilities(offer(false, true, true));
        assert_eq!(after.first(), Some(&"IMAP4rev1"));
        assert!(!after
            .iter()
            .any(|c| c.starts_with("AUTH=") || *c == "QUOTA"));
        let before = capabilities(offer(true, false, false));
        assert_eq!(
            &before[before.len() - 4..],
            ["QUOTA", "QUOTA=RES-STORAGE", "SASL-IR", "AUTH=PLAIN"]
        );
        assert_eq!(
            capabilities(offer(false, false, true)).last(),
            Some(&"AUTH=EXTERNAL")
        );
        assert!(!before
            .iter()
            .any(|c| *c == "STARTTLS" || c.starts_with("COMPRESS") || c.starts_with('X')));
    }

    #[test]
    fn chatmail_and_compress() {
        let o = Offer {
            logged_in: true,
            chatmail: true,
            ..Offer::default()
        };
        let caps = capabilities(o);
        assert!(caps.contains(&"XCHATMAIL") && caps.contains(&"XDELTAPUSH"));
        assert!(!caps.contains(&"COMPRESS=DEFLATE"));
        let caps = capabilities(Offer {
            compress: true,
            ..o
        });
        assert!(caps.contains(&"COMPRESS=DEFLATE"));
    }
}
