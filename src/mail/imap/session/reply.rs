//! Tagged replies and the small conversions every handler shares: store
//! errors to `NO` codes, store flag strings to IMAP flags and back.

use crate::mail::imap::response::{Code, Status};
use crate::mail::imap::types::Flag;
use crate::mail::store::StoreError;

/// A tagged reply.
pub(super) struct Reply {
    pub(super) status: Status,
    pub(super) code: Option<Code>,
    pub(super) text: String,
}

pub(super) fn ok(text: &str) -> Reply {
    Reply {
        status: Status::Ok,
        code: None,
        text: text.into(),
    }
}
pub(super) fn ok_code(code: Code, text: &str) -> Reply {
    Reply {
        status: Status::Ok,
        code: Some(code),
        text: text.into(),
    }
}
pub(super) fn no(code: Option<Code>, text: &str) -> Reply {
    Reply {
        status: Status::No,
        code,
        text: text.into(),
    }
}
pub(super) fn bad(text: &str) -> Reply {
    Reply {
        status: Status::Bad,
        code: None,
        text: text.into(),
    }
}

pub(super) fn store_err(e: StoreError) -> Reply {
    let code = match &e {
        StoreError::NoSuchMailbox(_) => Code::Nonexistent,
        StoreError::MailboxExists(_) => Code::AlreadyExists,
        StoreError::CannotDeleteInbox | StoreError::BadName(_) => Code::Cannot,
        StoreError::NoSuchMessage(_) => Code::Expunged,
        StoreError::UidsExhausted => Code::Limit,
        StoreError::Io(_) | StoreError::Locked(_) | StoreError::Corrupt(_) => {
            tracing::error!("store: {e}");
            return no(Some(Code::ServerBug), "internal error, try again later");
        }
    };
    no(Some(code), &e.to_string())
}

pub(super) fn to_flags(v: &std::collections::BTreeSet<String>) -> Vec<Flag> {
    v.iter().map(|s| Flag::from_atom(s)).collect()
}

pub(super) fn flag_strings(v: &[Flag]) -> Vec<String> {
    v.iter()
        .filter(|f| **f != Flag::Recent)
        .map(|f| f.as_str().to_owned())
        .collect()
}
