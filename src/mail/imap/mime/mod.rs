//! Message structure from raw RFC 5322 bytes: the MIME part tree behind
//! BODY/BODYSTRUCTURE (RFC 3501 §7.4.2), the ENVELOPE fields, and
//! `BODY[section]` extraction (§6.4.5).
//!
//! Everything works on byte ranges into the stored message, so a part tree
//! costs a few hundred bytes per part whatever the message size. The parser
//! is tolerant, as a server must be with mail it did not write: bare LF line
//! ends, missing or unclosed boundaries, a header with no body, garbage in
//! parameters all give *some* structure, never an error or a panic. Nesting
//! (multipart in message/rfc822 in multipart ...) stops at [`MAX_DEPTH`]
//! and the whole tree at [`MAX_PARTS`]; deeper content is treated as an
//! opaque leaf. Encoded words (RFC 2047) are left as they are, which is what
//! IMAP asks for.
//!
//! Layout: the part tree and its parser are in `structure.rs`, header
//! fields, unfolding and parameters in `header.rs`, ENVELOPE and address
//! lists in `envelope.rs`, and `BODY[section]<partial>` extraction in
//! `section.rs`.

mod envelope;
mod header;
mod section;
mod structure;
#[cfg(test)]
mod tests;

pub use envelope::{parse_addresses, Address, Envelope};
pub use header::{header_fields, header_value, unfold};
pub use section::{partial, section};
pub use structure::{parse, parse_header_end, Part, PartKind};

/// Deepest part nesting that is parsed; below it parts are leaves.
pub const MAX_DEPTH: usize = 32;
/// Most parts in one message tree.
pub const MAX_PARTS: usize = 2000;
/// Most addresses taken from one address header.
pub const MAX_ADDRESSES: usize = 1000;
