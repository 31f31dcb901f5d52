//! The bundled SMTP side: one parser ([`parser`]) and one session
//! ([`session`]) serving three listeners — submission (behind the front
//! door, identity-aware), LMTP (delivery from a local MTA) and inbound MX.
//!
//! STARTTLS is not offered on any of them: submission sits behind the front
//! door, which owns TLS; inbound MX without STARTTLS accepts plaintext only
//! (documented in README.md as not done yet).

pub mod message;
pub mod parser;
pub mod relay;
pub mod session;

pub use session::{serve, Mode, SmtpContext};
