//! METADATA (RFC 5464), as Delta Chat uses it for push tokens: private
//! entries per account and mailbox, in memory only, at most
//! [`MAX_METADATA_ENTRIES`] per account; shared entries are read-only.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{bad, no, ok, Reply};
use super::{Session, MAX_METADATA_ENTRIES};
use crate::mail::imap::response::{self, Code};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn get_metadata(
        &mut self,
        account: &str,
        mailbox: &str,
        entries: &[String],
    ) -> Reply {
        let map = self.ctx.metadata.lock().unwrap_or_else(|p| p.into_inner());
        let values: Vec<(String, Option<Vec<u8>>)> = entries
            .iter()
            .map(|e| {
                let k = (
                    account.to_owned(),
                    mailbox.to_owned(),
                    e.to_ascii_lowercase(),
                );
                (e.clone(), map.get(&k).cloned())
            })
            .collect();
        drop(map);
        let refs: Vec<(&str, Option<&[u8]>)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        if !refs.is_empty() {
            response::metadata(&mut self.out, mailbox, &refs);
        }
        ok("GETMETADATA completed")
    }

    pub(super) fn set_metadata(
        &mut self,
        account: &str,
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Reply {
        let mut map = self.ctx.metadata.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in entries {
            let key = (account.to_owned(), mailbox.clone(), k.to_ascii_lowercase());
            if !key.2.starts_with("/private/") && !key.2.starts_with("/shared/") {
                return bad("entry must start with /private/ or /shared/");
            }
            if key.2.starts_with("/shared/") {
                return no(Some(Code::NoPerm), "shared entries are read-only");
            }
            match v {
                None => {
                    map.remove(&key);
                }
                Some(v) => {
                    let count = map.keys().filter(|k| k.0 == account).count();
                    if !map.contains_key(&key) && count >= MAX_METADATA_ENTRIES {
                        return no(
                            Some(Code::Other("METADATA TOOMANY".into())),
                            "too many entries",
                        );
                    }
                    map.insert(key, v);
                }
            }
        }
        ok("SETMETADATA completed")
    }
}
