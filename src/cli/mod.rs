//! The command-line side of frontdoor, kept out of the library: the
//! subcommands' arguments and what they print (`keys`, `mail`/`accounts`, `mail dkim`,
//! `chatmail`), and the wiring of the embedded default (and of
//! `serve --chatmail`). Each calls the library's API,
//! as tests and examples do.

pub mod chatmail;
pub mod dkim;
pub mod embedded;
pub mod keys;
pub mod mail;
