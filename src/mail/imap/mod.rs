//! The protocol core of the bundled IMAP server (RFC 3501 IMAP4rev1 plus the
//! extensions Delta Chat and common clients use; the list with sources is in
//! `docs/imap.md`).
//!
//! Everything here is pure and I/O-free: the session code reads bytes from
//! the connection, hands them to [`parser::parse_command`], acts on the typed
//! [`parser::Command`] against the mail store, and writes what
//! [`response`] encodes. [`mime`] derives ENVELOPE, BODYSTRUCTURE and
//! `BODY[section]` from raw message bytes; [`sequence`] maps sequence and UID
//! sets onto a mailbox's UID list.
//!
//! Invariants: no function here panics on any input, allocates in proportion
//! to a size the peer only claimed, or recurses deeper than its limit.

pub mod mime;
pub mod parser;
pub mod response;
pub mod sequence;
pub mod types;
