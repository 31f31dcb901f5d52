//! The bundled mail backends.
pub mod imap;
