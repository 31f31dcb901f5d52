//! QUOTA (RFC 9208): one root `""` per account with a STORAGE limit from
//! the configuration; GETQUOTA, GETQUOTAROOT, and the check APPEND and COPY
//! make before they add bytes.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{no, ok, store_err, Reply};
use super::Session;
use crate::mail::imap::response::{self, Code};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn get_quota_root(&mut self, account: &str, mailbox: &str) -> Reply {
        match self.store.status(account, mailbox).await {
            Ok(_) => {
                response::quota_root(&mut self.out, mailbox, &[""]);
                self.write_quota(account).await;
                ok("GETQUOTAROOT completed")
            }
            Err(e) => store_err(e),
        }
    }

    pub(super) async fn get_quota(&mut self, account: &str, root: &str) -> Reply {
        if !root.is_empty() {
            return no(Some(Code::Nonexistent), "no such quota root");
        }
        self.write_quota(account).await;
        ok("GETQUOTA completed")
    }

    pub(super) async fn quota_allows(&self, account: &str, adding: u64) -> bool {
        let Some(quota) = self.ctx.cfg.quota else {
            return true;
        };
        let used = self.store.usage(account).await;
        let fits = used.saturating_add(adding) <= quota;
        if !fits {
            tracing::info!(account, used, quota, adding, "over quota");
        }
        fits
    }

    /// `* QUOTA "" (STORAGE used limit)`, in KiB as RFC 9208 counts.
    async fn write_quota(&mut self, account: &str) {
        let quota = self.ctx.cfg.quota.unwrap_or(0);
        let used = self.store.usage(account).await;
        response::quota(&mut self.out, "", &[("STORAGE", used / 1024, quota / 1024)]);
    }
}
