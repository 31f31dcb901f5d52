//! GETMETADATA and SETMETADATA (RFC 5464) as chatmail's relays answer
//! Delta Chat: the server's shared entries (mailbox `""`) from the chatmail
//! settings, private entries of the account kept on disk by
//! [`MetadataStore`](crate::mail::imap::metadata::MetadataStore), which
//! bounds their size and count. Bad entry names get `BAD`, refused values
//! `NO` with the RFC 5464 §4.3 codes.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{bad, no, ok, ok_code, store_err, Reply};
use super::Session;
use crate::mail::imap::metadata::{
    self, check_entry, check_value, Change, MetadataError, MetadataStore, SHARED_ENTRIES,
};
use crate::mail::imap::parser::MetadataDepth;
use crate::mail::imap::response::{self, Code};
use crate::mail::store::unix_now;

fn metadata_err(e: MetadataError) -> Reply {
    match e {
        MetadataError::BadName(..) => bad(&e.to_string()),
        MetadataError::TooLarge => no(
            Some(Code::Other(format!(
                "METADATA MAXSIZE {}",
                metadata::MAX_VALUE
            ))),
            &e.to_string(),
        ),
        MetadataError::TooMany => no(Some(Code::Other("METADATA TOOMANY".into())), &e.to_string()),
        MetadataError::ReadOnly => no(Some(Code::NoPerm), &e.to_string()),
        MetadataError::BadValue(_) => no(None, &e.to_string()),
        MetadataError::Io(_) | MetadataError::Corrupt(_) => {
            tracing::error!("{e}");
            no(Some(Code::ServerBug), "internal error, try again later")
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MetadataError> + Send + 'static,
) -> Result<T, MetadataError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(MetadataError::Io(std::io::Error::other(e.to_string()))))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `Some(reply)` when `mailbox` is not `""` and does not exist.
    async fn metadata_mailbox(&self, account: &str, mailbox: &str) -> Option<Reply> {
        if mailbox.is_empty() {
            return None;
        }
        self.store
            .status(account, mailbox)
            .await
            .err()
            .map(store_err)
    }

    pub(super) async fn get_metadata(
        &mut self,
        account: &str,
        mailbox: &str,
        entries: &[String],
        depth: MetadataDepth,
        max_size: Option<u64>,
    ) -> Reply {
        let mut names = Vec::with_capacity(entries.len());
        for e in entries {
            match check_entry(e) {
                Ok(n) => names.push(n),
                Err(e) => return metadata_err(e),
            }
        }
        if let Some(r) = self.metadata_mailbox(account, mailbox).await {
            return r;
        }
        let depth = match depth {
            MetadataDepth::Zero => Some(0),
            MetadataDepth::One => Some(1),
            MetadataDepth::Infinity => None,
        };
        let cfg = self.ctx.cfg.clone();
        let store: Arc<MetadataStore> = self.ctx.metadata.clone();
        let (acct, mbox) = (account.to_owned(), mailbox.to_owned());
        let found = blocking(move || {
            let now = unix_now();
            let chatmail = cfg.chatmail.as_ref();
            let mut out: Vec<(String, Option<String>)> = Vec::new();
            for name in names {
                let value = if name.starts_with("/shared/") {
                    if mbox.is_empty() {
                        metadata::shared_value(chatmail, &name, now)
                    } else {
                        None
                    }
                } else {
                    store.get(&acct, &mbox, &name, now)?
                };
                out.push((name.clone(), value));
                if depth == Some(0) {
                    continue;
                }
                if name.starts_with("/shared/") {
                    if !mbox.is_empty() {
                        continue;
                    }
                    let start = format!("{name}/");
                    for s in SHARED_ENTRIES {
                        let below = s
                            .strip_prefix(&start)
                            .is_some_and(|rest| depth.is_none_or(|d| rest.split('/').count() <= d));
                        if below {
                            if let Some(v) = metadata::shared_value(chatmail, s, now) {
                                out.push(((*s).to_owned(), Some(v)));
                            }
                        }
                    }
                } else {
                    for (k, v) in store.children(&acct, &mbox, &name, depth)? {
                        out.push((k, Some(v)));
                    }
                }
            }
            Ok(out)
        })
        .await;
        let found = match found {
            Ok(f) => f,
            Err(e) => return metadata_err(e),
        };
        // RFC 5464 §4.2.1: values over MAXSIZE are left out and counted.
        let mut longest_left_out = 0usize;
        let kept: Vec<(&str, Option<&[u8]>)> = found
            .iter()
            .filter(|(_, v)| {
                let len = v.as_ref().map_or(0, String::len);
                let keep = max_size.is_none_or(|m| (len as u64) <= m);
                if !keep {
                    longest_left_out = longest_left_out.max(len);
                }
                keep
            })
            .map(|(k, v)| (k.as_str(), v.as_deref().map(str::as_bytes)))
            .collect();
        if !kept.is_empty() {
            response::metadata(&mut self.out, mailbox, &kept);
        }
        if longest_left_out > 0 {
            return ok_code(
                Code::Other(format!("METADATA LONGENTRIES {longest_left_out}")),
                "Getmetadata completed",
            );
        }
        ok("Getmetadata completed")
    }

    pub(super) async fn set_metadata(
        &mut self,
        account: &str,
        mailbox: String,
        entries: Vec<(String, Option<Vec<u8>>)>,
    ) -> Reply {
        let mut changes: Vec<Change> = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let name = match check_entry(&name) {
                Ok(n) => n,
                Err(e) => return metadata_err(e),
            };
            if name.starts_with("/shared/") {
                return metadata_err(MetadataError::ReadOnly);
            }
            let value = match value.map(|v| check_value(&name, &v)).transpose() {
                Ok(v) => v,
                Err(e) => return metadata_err(e),
            };
            changes.push((name, value));
        }
        if changes.len() > metadata::MAX_ENTRIES {
            return metadata_err(MetadataError::TooMany);
        }
        if let Some(r) = self.metadata_mailbox(account, &mailbox).await {
            return r;
        }
        let store = self.ctx.metadata.clone();
        let acct = account.to_owned();
        let tokens = changes
            .iter()
            .filter(|(n, v)| n == metadata::DEVICETOKEN && v.is_some())
            .count();
        match blocking(move || store.set(&acct, &mailbox, &changes, unix_now())).await {
            Ok(()) => {
                if tokens > 0 {
                    tracing::info!(account, "device token stored");
                }
                ok("Setmetadata completed")
            }
            Err(e) => metadata_err(e),
        }
    }
}
