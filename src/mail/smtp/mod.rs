//! The bundled SMTP side: one parser ([`parser`]) and one session
//! ([`session`]) serving three listeners — submission (behind the front
//! door, identity-aware), LMTP (delivery from a local MTA) and inbound MX.
//!
//! STARTTLS is offered on the inbound MX only, with the front door's
//! certificates (files or ACME): submission sits behind the front door,
//! which owns TLS, and LMTP comes from the local MTA.

/// The message helpers live in [`crate::mail::message`] (DKIM reads them too).
pub use crate::mail::message;
pub mod parser;
pub mod relay;
pub mod session;

pub use session::{serve, Mode, SmtpContext, StartTls};
