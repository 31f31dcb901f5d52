//! What other sessions changed: the untagged EXPUNGE, FETCH (flags) and
//! EXISTS updates after each command, and IDLE (RFC 2177), which waits for
//! such changes, keeps the connection alive and ends on DONE or timeout.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::reply::to_flags;
use super::state::find;
use super::{ImapError, Session, BUSY_READ, IDLE_KEEPALIVE, IDLE_READ, IDLE_TIMEOUT};
use crate::mail::imap::parser::{self, IdleEnd};
use crate::mail::imap::response::{self, FetchData, Status};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Report changes made elsewhere: EXPUNGE (when allowed), flag changes,
    /// new messages.
    pub(super) async fn sync(&mut self, expunge_ok: bool) {
        let Some(account) = self.state.account().map(str::to_owned) else {
            return;
        };
        let Ok(fresh) = self.fresh(&account).await else {
            return;
        };
        let condstore = self.condstore;
        let Some(sel) = self.state.selected_mut() else {
            return;
        };
        let out = &mut self.out;
        if expunge_ok {
            let mut kept: Vec<(u32, u64)> = Vec::with_capacity(sel.msgs.len());
            for &(uid, ms) in &sel.msgs {
                if find(&fresh, uid).is_some() {
                    kept.push((uid, ms));
                } else {
                    response::expunge(out, u32::try_from(kept.len() + 1).unwrap_or(u32::MAX));
                }
            }
            sel.msgs = kept;
        }
        for (i, (uid, ms)) in sel.msgs.iter_mut().enumerate() {
            let Some(m) = find(&fresh, *uid) else {
                continue;
            };
            if m.modseq != *ms {
                *ms = m.modseq;
                let flags = to_flags(&m.flags);
                let mut items = vec![FetchData::Uid(m.uid), FetchData::Flags(&flags)];
                if condstore {
                    items.push(FetchData::ModSeq(m.modseq));
                }
                response::fetch(out, u32::try_from(i + 1).unwrap_or(u32::MAX), &items);
            }
        }
        let last = sel.msgs.last().map(|m| m.0).unwrap_or(0);
        let start = fresh.partition_point(|m| m.uid <= last);
        if start < fresh.len() {
            sel.msgs
                .extend(fresh[start..].iter().map(|m| (m.uid, m.modseq)));
            response::exists(out, u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX));
        }
    }

    pub(super) async fn idle(&mut self, tag: &str, account: &str) -> Result<(), ImapError> {
        let rx = match self.state.selected() {
            Some(sel) => self.store.subscribe(account, &sel.name).await.ok(),
            None => None,
        };
        let mut rx = rx;
        // Anything that arrived before IDLE is reported right away.
        self.sync(true).await;
        response::continuation(&mut self.out, "idling");
        self.flush().await?;
        let deadline = Instant::now() + IDLE_TIMEOUT;
        loop {
            match parser::parse_idle_done(&self.buf, &self.ctx.limits) {
                IdleEnd::Done { consumed } => {
                    self.consume(consumed);
                    self.sync(true).await;
                    response::tagged(&mut self.out, tag, Status::Ok, None, "IDLE terminated");
                    return Ok(());
                }
                IdleEnd::Bad { consumed } => {
                    self.consume(consumed);
                    response::tagged(&mut self.out, tag, Status::Bad, None, "expected DONE");
                    return Ok(());
                }
                IdleEnd::Fatal => return Err(ImapError::Fatal("line too long in IDLE".into())),
                IdleEnd::NeedMore => {}
            }
            let changed = async {
                match rx.as_mut() {
                    Some(r) => {
                        if r.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let want = if self.buf.is_empty() {
                IDLE_READ
            } else {
                BUSY_READ
            };
            self.buf.reserve(want);
            // IDLE is a long wait: no compressor meanwhile (compress.rs).
            self.stream.rest();
            tokio::select! {
                r = self.stream.read_buf(&mut self.buf) => {
                    match r {
                        Ok(0) => return Err(ImapError::Eof),
                        Ok(_) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ = changed => {
                    self.sync(true).await;
                    self.flush().await?;
                }
                _ = tokio::time::sleep(IDLE_KEEPALIVE) => {
                    response::untagged(&mut self.out, Status::Ok, None, "Still here");
                    self.flush().await?;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    response::untagged(&mut self.out, Status::Bye, None, "IDLE timed out; reconnect");
                    self.flush().await?;
                    self.state.log_out();
                    return Ok(());
                }
            }
        }
    }
}
