//! The RFC 3501 §3 connection state of one session (not authenticated,
//! authenticated, selected, logout) and the selected mailbox as the session
//! has reported it to its client.
//!
//! Invariant: the selected mailbox is a snapshot of (UID, MODSEQ) pairs, so
//! message sequence numbers change only when the session reports them.

use crate::mail::imap::sequence::SeqSet;
use crate::mail::store::MessageMeta;

/// Where the session stands (RFC 3501 §3).
pub(super) enum State {
    /// Before LOGIN / AUTHENTICATE (and without pre-authentication).
    NotAuthenticated,
    /// Logged in as `account`, no mailbox selected.
    Authenticated { account: String },
    /// Logged in as `account` with `mailbox` selected or examined.
    Selected { account: String, mailbox: Selected },
    /// LOGOUT, too many errors or an IDLE timeout: no more commands are read.
    /// `account` is kept for the closing log line.
    Logout { account: Option<String> },
}

impl State {
    /// The logged-in account, if any (also after logout).
    pub(super) fn account(&self) -> Option<&str> {
        match self {
            State::NotAuthenticated => None,
            State::Authenticated { account } | State::Selected { account, .. } => Some(account),
            State::Logout { account } => account.as_deref(),
        }
    }

    pub(super) fn is_logout(&self) -> bool {
        matches!(self, State::Logout { .. })
    }

    pub(super) fn selected(&self) -> Option<&Selected> {
        match self {
            State::Selected { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    pub(super) fn selected_mut(&mut self) -> Option<&mut Selected> {
        match self {
            State::Selected { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// Authenticated as `account` (from not authenticated).
    pub(super) fn log_in(&mut self, account: &str) {
        *self = State::Authenticated {
            account: account.to_owned(),
        };
    }

    /// Selected → authenticated; returns the mailbox that was selected.
    /// Other states are left alone.
    pub(super) fn deselect(&mut self) -> Option<Selected> {
        let State::Selected { account, .. } = self else {
            return None;
        };
        let account = std::mem::take(account);
        match std::mem::replace(self, State::Authenticated { account }) {
            State::Selected { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// Authenticated or selected → selected `mailbox`; ignored otherwise.
    pub(super) fn select(&mut self, mailbox: Selected) {
        if let State::Authenticated { account } | State::Selected { account, .. } = self {
            let account = std::mem::take(account);
            *self = State::Selected { account, mailbox };
        }
    }

    /// Any state → logout.
    pub(super) fn log_out(&mut self) {
        let account = self.account().map(str::to_owned);
        *self = State::Logout { account };
    }
}

/// The selected mailbox as this session has reported it.
pub(super) struct Selected {
    pub(super) name: String,
    pub(super) read_only: bool,
    /// (UID, MODSEQ) by message sequence number - 1.
    pub(super) msgs: Vec<(u32, u64)>,
}

/// Why a sequence set names nothing usable: the text of a BAD reply.
pub(super) struct BadSet(pub(super) String);

impl Selected {
    pub(super) fn uids(&self) -> Vec<u32> {
        self.msgs.iter().map(|m| m.0).collect()
    }

    pub(super) fn msn_of(&self, uid: u32) -> Option<u32> {
        self.msgs
            .binary_search_by_key(&uid, |m| m.0)
            .ok()
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    /// The (MSN, UID) pairs a set names.
    pub(super) fn targets(&self, uid: bool, set: &SeqSet) -> Result<Vec<(u32, u32)>, BadSet> {
        if uid {
            let uids = self.uids();
            Ok(set
                .uid_indices(&uids)
                .into_iter()
                .filter_map(|i| Some((u32::try_from(i + 1).ok()?, *uids.get(i)?)))
                .collect())
        } else {
            let count = u32::try_from(self.msgs.len()).unwrap_or(u32::MAX);
            match set.msns(count) {
                Ok(m) => Ok(m
                    .into_iter()
                    .filter_map(|n| {
                        let i = usize::try_from(n).ok()?.checked_sub(1)?;
                        Some((n, self.msgs.get(i)?.0))
                    })
                    .collect()),
                Err(e) => Err(BadSet(e.to_string())),
            }
        }
    }
}

/// The message with `uid` in a UID-sorted list.
pub(super) fn find(fresh: &[MessageMeta], uid: u32) -> Option<&MessageMeta> {
    fresh
        .binary_search_by_key(&uid, |m| m.uid)
        .ok()
        .and_then(|i| fresh.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> Selected {
        Selected {
            name: "INBOX".into(),
            read_only: false,
            msgs: vec![(3, 1), (7, 2), (9, 5)],
        }
    }

    #[test]
    fn transitions_follow_rfc3501_3() {
        let mut s = State::NotAuthenticated;
        s.select(inbox());
        assert!(s.selected().is_none(), "no SELECT before login");
        s.log_in("a@example.org");
        assert_eq!(s.account(), Some("a@example.org"));
        s.select(inbox());
        assert_eq!(s.selected().map(|m| m.name.as_str()), Some("INBOX"));
        assert_eq!(s.deselect().map(|m| m.msgs.len()), Some(3));
        assert!(s.selected().is_none());
        assert_eq!(s.account(), Some("a@example.org"));
        assert!(s.deselect().is_none());
        s.select(inbox());
        s.log_out();
        assert!(s.is_logout());
        assert!(s.selected().is_none());
        assert_eq!(s.account(), Some("a@example.org"));
        let mut n = State::NotAuthenticated;
        n.log_out();
        assert_eq!(n.account(), None);
    }

    #[test]
    fn targets_by_msn_and_uid() {
        let sel = inbox();
        let set = |s: &str| SeqSet::parse(s.as_bytes()).expect("valid set");
        assert_eq!(
            sel.targets(false, &set("2:*")).ok(),
            Some(vec![(2, 7), (3, 9)])
        );
        assert_eq!(sel.targets(true, &set("7")).ok(), Some(vec![(2, 7)]));
        assert!(sel.targets(false, &set("4")).is_err());
        assert_eq!(sel.msn_of(9), Some(3));
        assert_eq!(sel.msn_of(8), None);
    }
}
