//! Chatmail mode of the bundled backend (`mail.chatmail:`): the rules a
//! chatmail relay applies on top of plain mail serving. This module owns the
//! validated settings ([`ChatmailConfig`]); the rules themselves live beside
//! the protocol code that applies them.

pub mod config;

pub use config::{ChatmailConfig, PathRoute};
