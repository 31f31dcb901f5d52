//! STORE and UID STORE: flag changes, with CONDSTORE's UNCHANGEDSINCE
//! (RFC 7162 §3.1.3) and the FLAGS responses RFC 3501 §6.4.6 asks for.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{flag_strings, no, ok, ok_code, store_err, to_flags, Reply};
use super::state::find;
use super::Session;
use crate::mail::imap::parser::StoreMode;
use crate::mail::imap::response::{self, Code, FetchData};
use crate::mail::imap::sequence::{format_numbers, SeqSet};
use crate::mail::imap::types::Flag;
use crate::mail::store::FlagOp;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        unchanged_since: Option<u64>,
        mode: StoreMode,
        silent: bool,
        flags: &[Flag],
    ) -> Reply {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if self.state.selected().is_none_or(|s| s.read_only) {
            return no(Some(Code::ReadOnly), "mailbox is read-only");
        }
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let op = match mode {
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
            StoreMode::Replace => FlagOp::Replace,
        };
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        let res = match self
            .store
            .store_flags(
                account,
                &self.sel_name(),
                uids,
                op,
                flag_strings(flags),
                unchanged_since,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return store_err(e),
        };
        let condstore = self.condstore;
        for m in &res.changed {
            let Some(sel) = self.state.selected_mut() else {
                break;
            };
            let Ok(i) = sel.msgs.binary_search_by_key(&m.uid, |x| x.0) else {
                continue;
            };
            sel.msgs[i].1 = m.modseq;
            // RFC 7162 §3.1.3: with UNCHANGEDSINCE, FLAGS come back even when silent.
            if !silent || unchanged_since.is_some() {
                let fl = to_flags(&m.flags);
                let mut items = Vec::with_capacity(3);
                if uid {
                    items.push(FetchData::Uid(m.uid));
                }
                items.push(FetchData::Flags(&fl));
                if condstore {
                    items.push(FetchData::ModSeq(m.modseq));
                }
                response::fetch(
                    &mut self.out,
                    u32::try_from(i + 1).unwrap_or(u32::MAX),
                    &items,
                );
            }
        }
        if !silent {
            // Messages named but not changed (flags already so) still get
            // their FLAGS, as RFC 3501 §6.4.6 describes.
            let changed: std::collections::HashSet<u32> =
                res.changed.iter().map(|m| m.uid).collect();
            let skipped: std::collections::HashSet<u32> = res.modified.iter().copied().collect();
            let rest: Vec<(u32, u32)> = targets
                .iter()
                .filter(|t| !changed.contains(&t.1) && !skipped.contains(&t.1))
                .copied()
                .collect();
            if !rest.is_empty() {
                if let Ok(fresh) = self.fresh(account).await {
                    for (msn, u) in rest {
                        if let Some(m) = find(&fresh, u) {
                            let fl = to_flags(&m.flags);
                            let mut items = Vec::with_capacity(3);
                            if uid {
                                items.push(FetchData::Uid(u));
                            }
                            items.push(FetchData::Flags(&fl));
                            if condstore {
                                items.push(FetchData::ModSeq(m.modseq));
                            }
                            response::fetch(&mut self.out, msn, &items);
                        }
                    }
                }
            }
        }
        if res.modified.is_empty() {
            ok("STORE completed")
        } else {
            let nums: Vec<u32> = if uid {
                res.modified.clone()
            } else {
                let sel = self.state.selected();
                res.modified
                    .iter()
                    .filter_map(|u| sel.and_then(|s| s.msn_of(*u)))
                    .collect()
            };
            ok_code(
                Code::Modified(format_numbers(&nums)),
                "conditional STORE failed",
            )
        }
    }
}
