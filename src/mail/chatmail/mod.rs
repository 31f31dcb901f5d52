//! Chatmail mode of the bundled backend (`mail.chatmail:`): the rules a
//! chatmail relay applies on top of plain mail serving. This module owns the
//! validated settings ([`ChatmailConfig`]), the pure rules the SMTP
//! session applies in chatmail mode: the encryption rule ([`filter`], with
//! the OpenPGP payload check in [`openpgp`]), the header cleanup
//! ([`privacy`]), the per-sender send limit ([`send_limit`]) and the
//! per-account switches kept as files ([`account_flags`]), and the
//! `dclogin:`/`dcaccount:` URIs Delta Chat scans ([`uri`]). Account
//! creation and inactivity live in `mail::accounts`.

pub mod account_flags;
pub mod config;
pub mod filter;
pub mod openpgp;
pub mod privacy;
pub mod send_limit;
pub mod uri;

pub use config::{ChatmailConfig, PathRoute};
