//! Unit tests of the store: durability across reopen, locking, torn
//! journals, mailbox operations, concurrency and compaction.

use std::fs::OpenOptions;
use std::io::Write;

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn expire_removes_only_old_messages_everywhere_and_counts_usage() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    st.deliver(&s(&["a@x", "b@x"]), b"new").unwrap();
    st.create_mailbox("a@x", "Archive").unwrap();
    let now = unix_now();
    st.append("a@x", "Archive", b"old one", &[], Some(now - 100))
        .unwrap();
    st.append("a@x", "INBOX", b"old two", &s(&["\\Seen"]), Some(now - 50))
        .unwrap();
    assert_eq!(st.usage("a@x"), 3 + 7 + 7);
    assert_eq!(st.expire(now - 10).unwrap(), 2);
    let left: Vec<Vec<u8>> = ["INBOX", "Archive"]
        .iter()
        .flat_map(|m| {
            st.messages("a@x", m)
                .unwrap()
                .into_iter()
                .map(|x| st.read("a@x", m, x.uid).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(left, vec![b"new".to_vec()]);
    assert_eq!(st.usage("a@x"), 3);
    assert_eq!(st.messages("b@x", "INBOX").unwrap().len(), 1);
    assert_eq!(st.expire(now - 10).unwrap(), 0);
    // Durable: still gone after a reopen.
    drop(st);
    let st = Store::open(d.path()).unwrap();
    assert_eq!(st.usage("a@x"), 3);
}

#[test]
fn deliver_read_flags_expunge_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    let uids = st
        .deliver(&s(&["a@x", "b@x"]), b"Subject: hi\r\n\r\nbody\r\n")
        .unwrap();
    assert_eq!(uids, vec![1, 1]);
    st.deliver(&s(&["a@x"]), b"two").unwrap();
    assert_eq!(st.read("a@x", "inbox", 2).unwrap(), b"two");
    let r = st
        .store_flags("a@x", "INBOX", &[1], FlagOp::Add, &s(&["\\Deleted"]), None)
        .unwrap();
    assert_eq!(r.changed.len(), 1);
    assert_eq!(st.expunge("a@x", "INBOX", None).unwrap(), vec![1]);
    let before = st.status("a@x", "INBOX").unwrap();
    drop(st);
    let st = Store::open(d.path()).unwrap();
    assert_eq!(st.status("a@x", "INBOX").unwrap(), before);
    assert_eq!(before.exists, 1);
    assert_eq!(before.uidnext, 3);
    // b's copy shares the blob and must outlive a's expunge.
    assert_eq!(
        st.read("b@x", "INBOX", 1).unwrap(),
        b"Subject: hi\r\n\r\nbody\r\n"
    );
}

#[test]
fn second_open_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _st = Store::open(d.path()).unwrap();
    assert!(matches!(Store::open(d.path()), Err(StoreError::Locked(_))));
}

#[test]
fn torn_journal_tail_is_cut_and_store_works() {
    let d = tempfile::tempdir().unwrap();
    {
        let st = Store::open(d.path()).unwrap();
        st.deliver(&s(&["a@x"]), b"one").unwrap();
    }
    let j = d.path().join("store/journal");
    let mut f = OpenOptions::new().append(true).open(&j).unwrap();
    f.write_all(&journal::frame(b"[{\"op\":\"delete\"")[..9])
        .unwrap();
    drop(f);
    let st = Store::open(d.path()).unwrap();
    assert_eq!(st.messages("a@x", "INBOX").unwrap().len(), 1);
    st.deliver(&s(&["a@x"]), b"two").unwrap();
    drop(st);
    let st = Store::open(d.path()).unwrap();
    assert_eq!(st.messages("a@x", "INBOX").unwrap().len(), 2);
}

#[test]
fn mailboxes_copy_move_rename_uidvalidity() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    st.ensure_account("a").unwrap();
    st.create_mailbox("a", "Archive/2024").unwrap();
    assert!(matches!(
        st.create_mailbox("a", "Archive"),
        Err(StoreError::MailboxExists(_))
    ));
    let (v, uid) = st
        .append("a", "INBOX", b"m", &s(&["\\Seen"]), Some(5))
        .unwrap();
    assert_eq!(uid, 1);
    let c = st.copy("a", "INBOX", &[1], "Archive").unwrap();
    assert_eq!(c.pairs, vec![(1, 1)]);
    let m = st
        .move_messages("a", "INBOX", &[1], "Archive/2024")
        .unwrap();
    assert_eq!(m.pairs, vec![(1, 1)]);
    assert_eq!(st.status("a", "INBOX").unwrap().exists, 0);
    st.rename_mailbox("a", "Archive", "Old").unwrap();
    let names: Vec<String> = st.list_mailboxes("a").into_iter().map(|m| m.name).collect();
    assert_eq!(names, s(&["INBOX", "Old", "Old/2024"]));
    assert_eq!(st.read("a", "Old/2024", 1).unwrap(), b"m");
    st.delete_mailbox("a", "Old").unwrap();
    st.create_mailbox("a", "Old").unwrap();
    assert_ne!(st.status("a", "Old").unwrap().uidvalidity, v);
    assert!(matches!(
        st.delete_mailbox("a", "inbox"),
        Err(StoreError::CannotDeleteInbox)
    ));
}

#[test]
fn unchanged_since_and_notification() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    st.ensure_account("a").unwrap();
    let mut rx = st.subscribe("a", "INBOX");
    st.deliver(&s(&["a"]), b"x").unwrap();
    assert!(rx.has_changed().unwrap());
    let seen = *rx.borrow_and_update();
    let r = st
        .store_flags(
            "a",
            "INBOX",
            &[1],
            FlagOp::Add,
            &s(&["\\Seen"]),
            Some(seen - 1),
        )
        .unwrap();
    assert_eq!(r.modified, vec![1]);
    assert!(r.changed.is_empty());
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn concurrent_deliveries_get_distinct_uids() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let st = st.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    st.deliver(&s(&["a"]), format!("{t}-{i}").as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let msgs = st.messages("a", "INBOX").unwrap();
    let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=100).collect::<Vec<u32>>());
    let mut bodies: Vec<Vec<u8>> = uids
        .iter()
        .map(|u| st.read("a", "INBOX", *u).unwrap())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 100);
}

#[test]
fn compaction_keeps_state() {
    let d = tempfile::tempdir().unwrap();
    let st = Store::open(d.path()).unwrap();
    st.deliver(&s(&["a"]), b"x").unwrap();
    for _ in 0..5 {
        st.store_flags("a", "INBOX", &[1], FlagOp::Add, &s(&["\\Seen"]), None)
            .unwrap();
        st.store_flags("a", "INBOX", &[1], FlagOp::Remove, &s(&["\\Seen"]), None)
            .unwrap();
    }
    let before = st.status("a", "INBOX").unwrap();
    st.compact().unwrap();
    drop(st);
    let st = Store::open(d.path()).unwrap();
    assert_eq!(st.status("a", "INBOX").unwrap(), before);
}
