//! Per-account switches of chatmail mode kept as files in the account's
//! directory, `<data_dir>/mailboxes/<account>/`, the way chatmail keeps
//! `enforceE2EEincoming` in each address's mailbox directory.
//!
//! `allowCleartextIncoming`: when present, cleartext mail from outside (LMTP
//! and the inbound MX) is accepted for this account; when absent (the
//! default) it is refused with `523`. chatmail creates `enforceE2EEincoming`
//! for every new address and accepts cleartext where it is missing; frontdoor
//! enforces for every account and lets the operator opt one out, which is the
//! same switch with the default the other way round (`touch` the file to
//! allow, remove it to enforce again; read on every delivery, no restart).

use std::path::{Path, PathBuf};

/// The file that lets an account receive cleartext from outside.
pub const ALLOW_CLEARTEXT_INCOMING: &str = "allowCleartextIncoming";

/// `<data_dir>/mailboxes/<account>`, or `None` for a name that is not a
/// plain address (no path separators, no leading dot).
pub fn account_dir(data_dir: &Path, account: &str) -> Option<PathBuf> {
    let ok =
        account.contains('@') && !account.starts_with('.') && !account.contains(['/', '\\', '\0']);
    ok.then(|| data_dir.join("mailboxes").join(account))
}

/// May `account` receive cleartext from outside?
pub fn cleartext_incoming_ok(data_dir: &Path, account: &str) -> bool {
    account_dir(data_dir, account).is_some_and(|d| d.join(ALLOW_CLEARTEXT_INCOMING).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = "bob@example.org";
        assert!(!cleartext_incoming_ok(dir.path(), a));
        let d = account_dir(dir.path(), a).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        assert!(!cleartext_incoming_ok(dir.path(), a));
        std::fs::write(d.join(ALLOW_CLEARTEXT_INCOMING), b"").unwrap();
        assert!(cleartext_incoming_ok(dir.path(), a));
        assert!(account_dir(dir.path(), "../x@y").is_none());
        assert!(account_dir(dir.path(), "nobody").is_none());
    }
}
