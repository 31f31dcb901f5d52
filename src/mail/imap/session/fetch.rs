//! FETCH and UID FETCH: the data items of RFC 3501 §6.4.5 (ENVELOPE,
//! BODYSTRUCTURE, `BODY[section]<partial>` ...), CONDSTORE's MODSEQ and
//! CHANGEDSINCE (RFC 7162), the implicit `\Seen` of a non-peek body
//! fetch, and output streamed out as it grows.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{ok, store_err, to_flags, Reply};
use super::state::find;
use super::{ImapError, Session, OUT_HIGH_WATER};
use crate::mail::imap::mime;
use crate::mail::imap::parser::FetchItem;
use crate::mail::imap::response::{self, FetchData};
use crate::mail::imap::sequence::SeqSet;
use crate::mail::imap::types::DateTime;
use crate::mail::store::{FlagOp, StoreError};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn fetch(
        &mut self,
        account: &str,
        uid: bool,
        set: &SeqSet,
        items: &[FetchItem],
        changed_since: Option<u64>,
    ) -> Result<Reply, ImapError> {
        let targets = match self.targets(uid, set) {
            Ok(t) => t,
            Err(r) => return Ok(r),
        };
        if changed_since.is_some() || items.contains(&FetchItem::ModSeq) {
            self.condstore = true;
        }
        let want_modseq = changed_since.is_some() || items.contains(&FetchItem::ModSeq);
        let read_only = self.state.selected().is_none_or(|s| s.read_only);
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    FetchItem::Rfc822
                        | FetchItem::Rfc822Text
                        | FetchItem::BodySection { peek: false, .. }
                )
            });
        let name = self.sel_name();
        let mut fresh = match self.fresh(account).await {
            Ok(f) => f,
            Err(e) => return Ok(store_err(e)),
        };
        if let Some(cs) = changed_since {
            // RFC 7162 §3.1.4.1: only messages changed after CHANGEDSINCE.
            fresh.retain(|m| m.modseq > cs);
        }
        let mut seen_now = std::collections::HashSet::new();
        if sets_seen {
            let unseen: Vec<u32> = targets
                .iter()
                .filter(|(_, u)| find(&fresh, *u).is_some_and(|m| !m.flags.contains("\\Seen")))
                .map(|(_, u)| *u)
                .collect();
            if !unseen.is_empty() {
                let res = self
                    .store
                    .store_flags(
                        account,
                        &name,
                        unseen,
                        FlagOp::Add,
                        vec!["\\Seen".to_owned()],
                        None,
                    )
                    .await;
                if let Ok(r) = res {
                    for m in r.changed {
                        seen_now.insert(m.uid);
                        if let Ok(i) = fresh.binary_search_by_key(&m.uid, |x| x.uid) {
                            fresh[i] = m.clone();
                        }
                        if let Some(sel) = self.state.selected_mut() {
                            if let Ok(i) = sel.msgs.binary_search_by_key(&m.uid, |x| x.0) {
                                sel.msgs[i].1 = m.modseq;
                            }
                        }
                    }
                }
            }
        }
        let needs_raw = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Envelope
                    | FetchItem::Rfc822
                    | FetchItem::Rfc822Header
                    | FetchItem::Rfc822Text
                    | FetchItem::Body
                    | FetchItem::BodyStructure
                    | FetchItem::BodySection { .. }
            )
        });
        let needs_parts = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Body
                    | FetchItem::BodyStructure
                    | FetchItem::Rfc822Text
                    | FetchItem::BodySection { .. }
            )
        });
        for (msn, u) in targets {
            let Some(m) = find(&fresh, u) else {
                continue;
            };
            let raw = if needs_raw {
                match self.store.read(account, &name, u).await {
                    Ok(r) => r,
                    Err(StoreError::NoSuchMessage(_)) => continue,
                    Err(e) => return Ok(store_err(e)),
                }
            } else {
                Vec::new()
            };
            let root = needs_parts.then(|| mime::parse(&raw));
            let header_end = mime::parse_header_end(&raw);
            let flags = to_flags(&m.flags);
            // Owned values first, then the borrowed FetchData list.
            let mut envelope = None;
            let mut sections: Vec<Option<std::borrow::Cow<'_, [u8]>>> = Vec::new();
            for it in items {
                match it {
                    FetchItem::Envelope => {
                        envelope = Some(mime::Envelope::from_header(
                            raw.get(..header_end).unwrap_or_default(),
                        ))
                    }
                    FetchItem::BodySection { section, .. } => {
                        sections.push(root.as_ref().and_then(|r| mime::section(&raw, r, section)))
                    }
                    _ => {}
                }
            }
            let mut data: Vec<FetchData<'_>> = Vec::with_capacity(items.len() + 3);
            if uid || items.contains(&FetchItem::Uid) {
                data.push(FetchData::Uid(m.uid));
            }
            let mut flags_done = false;
            let mut sec_i = 0;
            for it in items {
                match it {
                    FetchItem::Uid => {}
                    FetchItem::Flags => {
                        flags_done = true;
                        data.push(FetchData::Flags(&flags));
                    }
                    FetchItem::InternalDate => data.push(FetchData::InternalDate(
                        DateTime::from_unix_seconds(m.internal_date),
                    )),
                    FetchItem::Rfc822Size => data.push(FetchData::Rfc822Size(m.size)),
                    FetchItem::ModSeq => {}
                    FetchItem::Envelope => {
                        if let Some(e) = &envelope {
                            data.push(FetchData::Envelope(e));
                        }
                    }
                    FetchItem::Rfc822 => data.push(FetchData::Rfc822(&raw)),
                    FetchItem::Rfc822Header => data.push(FetchData::Rfc822Header(
                        raw.get(..header_end).unwrap_or_default(),
                    )),
                    FetchItem::Rfc822Text => data.push(FetchData::Rfc822Text(
                        raw.get(header_end..).unwrap_or_default(),
                    )),
                    FetchItem::Body => {
                        if let Some(r) = &root {
                            data.push(FetchData::Body { raw: &raw, part: r });
                        }
                    }
                    FetchItem::BodyStructure => {
                        if let Some(r) = &root {
                            data.push(FetchData::BodyStructure { raw: &raw, part: r });
                        }
                    }
                    FetchItem::BodySection {
                        section, partial, ..
                    } => {
                        let d = sections.get(sec_i).and_then(|s| s.as_deref());
                        sec_i += 1;
                        let (d, origin) = match partial {
                            Some((start, len)) => {
                                (d.map(|d| mime::partial(d, *start, *len)), Some(*start))
                            }
                            None => (d, None),
                        };
                        data.push(FetchData::BodySection {
                            section,
                            origin,
                            data: Some(d.unwrap_or_default()),
                        });
                    }
                }
            }
            if !flags_done && seen_now.contains(&m.uid) {
                data.push(FetchData::Flags(&flags));
            }
            if want_modseq || (self.condstore && seen_now.contains(&m.uid)) {
                data.push(FetchData::ModSeq(m.modseq));
            }
            response::fetch(&mut self.out, msn, &data);
            drop(data);
            if self.out.len() > OUT_HIGH_WATER {
                self.flush().await?;
            }
        }
        Ok(ok("FETCH completed"))
    }
}
