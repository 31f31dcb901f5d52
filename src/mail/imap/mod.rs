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

/// The capabilities whose commands and arguments [`parser`] understands.
/// The session advertises those it also implements; `COMPRESS=DEFLATE`
/// is deliberately absent (Delta Chat turns it on whenever offered, so it
/// may only be offered once the session compresses), as is `STARTTLS`
/// (TLS ends at the front door).
pub const PARSER_CAPABILITIES: &[&str] = &[
    "IMAP4rev1",
    "LITERAL+",
    "SASL-IR",
    "AUTH=PLAIN",
    "AUTH=EXTERNAL",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "ENABLE",
    "ID",
    "NAMESPACE",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "METADATA",
    "QUOTA",
    "WITHIN",
];
