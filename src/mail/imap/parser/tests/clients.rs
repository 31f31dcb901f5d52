//! The commands Delta Chat and other clients send, the extensions, and the
//! SEARCH and FETCH grammars.

use super::*;

/// The exact commands Delta Chat core sends (docs/imap.md lists them).
#[test]
fn delta_chat_commands() {
    assert_eq!(
        body("A1 LOGIN \"alice@example.org\" \"p\\\"w\\\\d\"\r\n"),
        C::Login {
            user: b"alice@example.org".to_vec(),
            password: b"p\"w\\d".to_vec()
        }
    );
    assert_eq!(
        body("A2 ID (\"name\" \"Delta Chat\")\r\n"),
        C::Id {
            params: Some(vec![("name".into(), Some("Delta Chat".into()))])
        }
    );
    assert_eq!(body("A3 ID NIL\r\n"), C::Id { params: None });
    // RFC 2971 §3.3 limits: 30 pairs, 30-octet fields, 1024-octet values.
    let pairs = |n: usize| {
        (0..n)
            .map(|i| format!("\"f{i}\" \"v\""))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let id = |p: String| format!("A6 ID ({p})\r\n");
    assert!(matches!(body(&id(pairs(30))), C::Id { params: Some(p) } if p.len() == 30));
    assert!(bad(&id(pairs(31))).1.contains("30 field-value pairs"));
    let field = "f".repeat(30);
    assert!(matches!(
        body(&id(format!("\"{field}\" NIL"))),
        C::Id { .. }
    ));
    assert!(bad(&id(format!("\"{field}x\" NIL")))
        .1
        .contains("ID: field"));
    let value = format!("{{1025+}}\r\n{}", "v".repeat(1025));
    assert!(bad(&id(format!("\"name\" {value}")))
        .1
        .contains("value over 1024"));
    assert_eq!(
        body("A4 SELECT \"INBOX\" (CONDSTORE)\r\n"),
        C::Select {
            mailbox: "INBOX".into(),
            condstore: true
        }
    );
    assert_eq!(
        body("A5 LIST \"\" \"*\"\r\n"),
        C::List(ListCommand {
            reference: "".into(),
            patterns: vec!["*".into()],
            ..Default::default()
        })
    );
    assert_eq!(
        body("A6 EXAMINE \"DeltaChat\"\r\n"),
        C::Examine {
            mailbox: "DeltaChat".into(),
            condstore: false
        }
    );
    assert_eq!(
        body("A7 STATUS \"INBOX\" (UIDNEXT)\r\n"),
        C::Status {
            mailbox: "INBOX".into(),
            items: vec![StatusItem::UidNext]
        }
    );
    let prefetch = "A8 UID FETCH 1:500 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE X-MICROSOFT-ORIGINAL-MESSAGE-ID FROM CHAT-VERSION CHAT-IS-POST-MESSAGE AUTO-SUBMITTED AUTOCRYPT-SETUP-MESSAGE)])\r\n";
    match body(prefetch) {
        C::Fetch {
            uid: true, items, ..
        } => {
            assert_eq!(items.len(), 4);
            assert_eq!(
                items[..3],
                [
                    FetchItem::Uid,
                    FetchItem::InternalDate,
                    FetchItem::Rfc822Size
                ]
            );
            match &items[3] {
                FetchItem::BodySection {
                    peek: true,
                    section,
                    partial: None,
                } => {
                    assert!(section.part.is_empty());
                    match &section.text {
                        Some(SectionText::HeaderFields(f)) => {
                            assert_eq!(f.len(), 8);
                            assert_eq!(f[0], "MESSAGE-ID");
                        }
                        other => panic!("{other:?}"),
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        body("A9 UID FETCH 7,9:12 (FLAGS BODY.PEEK[])\r\n"),
        C::Fetch {
            uid: true,
            set: set("7,9:12"),
            items: vec![
                FetchItem::Flags,
                FetchItem::BodySection {
                    peek: true,
                    section: Section::default(),
                    partial: None
                }
            ],
            changed_since: None,
        }
    );
    assert_eq!(
        body("A10 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1234)\r\n"),
        C::Fetch {
            uid: true,
            set: set("1:*"),
            items: vec![FetchItem::Flags],
            changed_since: Some(1234)
        }
    );
    assert_eq!(
        body("A11 UID STORE 3:5,9 +FLAGS (\\Seen)\r\n"),
        C::Store {
            uid: true,
            set: set("3:5,9"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Seen],
        }
    );
    assert_eq!(
        body("A12 UID MOVE 3:5 \"DeltaChat\"\r\n"),
        C::Move {
            uid: true,
            set: set("3:5"),
            mailbox: "DeltaChat".into()
        }
    );
    assert_eq!(
        body("A13 UID COPY 3:5 \"DeltaChat\"\r\n"),
        C::Copy {
            uid: true,
            set: set("3:5"),
            mailbox: "DeltaChat".into()
        }
    );
    assert_eq!(body("A14 IDLE\r\n"), C::Idle);
    assert_eq!(
        body("A15 GETQUOTAROOT \"INBOX\"\r\n"),
        C::GetQuotaRoot {
            mailbox: "INBOX".into()
        }
    );
    assert_eq!(
        body("A16 GETMETADATA \"\" (/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn)\r\n"),
        C::GetMetadata {
            mailbox: "".into(),
            max_size: None,
            depth: MetadataDepth::Zero,
            entries: vec![
                "/shared/comment".into(),
                "/shared/admin".into(),
                "/shared/vendor/deltachat/irohrelay".into(),
                "/shared/vendor/deltachat/turn".into(),
            ],
        }
    );
    // Older async-imap writes the options first.
    assert_eq!(
        body("A16 GETMETADATA (DEPTH 0) \"\" (/shared/comment)\r\n"),
        C::GetMetadata {
            mailbox: "".into(),
            max_size: None,
            depth: MetadataDepth::Zero,
            entries: vec!["/shared/comment".into()],
        }
    );
    let token = "-----BEGIN PGP MESSAGE-----";
    let s = format!(
        "A17 SETMETADATA \"INBOX\" (/private/devicetoken {{{}+}}\r\n{token})\r\n",
        token.len()
    );
    assert_eq!(
        body(&s),
        C::SetMetadata {
            mailbox: "INBOX".into(),
            entries: vec![(
                "/private/devicetoken".into(),
                Some(token.as_bytes().to_vec())
            )],
        }
    );
    assert_eq!(
        body("A18 COMPRESS DEFLATE\r\n"),
        C::Compress {
            mechanism: "DEFLATE".into()
        }
    );
    assert_eq!(body("A19 CLOSE\r\n"), C::Close);
    assert_eq!(body("A20 LOGOUT\r\n"), C::Logout);
}

#[test]
fn extensions() {
    assert_eq!(
        body("a UID EXPUNGE 3000:3002\r\n"),
        C::UidExpunge {
            set: set("3000:3002")
        }
    );
    assert_eq!(
        body("a MOVE 1:3 Trash\r\n"),
        C::Move {
            uid: false,
            set: set("1:3"),
            mailbox: "Trash".into()
        }
    );
    assert_eq!(
        body("a ENABLE CONDSTORE utf8=accept\r\n"),
        C::Enable {
            capabilities: vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()]
        }
    );
    assert_eq!(body("a NAMESPACE\r\n"), C::Namespace);
    assert_eq!(body("a UNSELECT\r\n"), C::Unselect);
    assert_eq!(
        body("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
        C::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"\0alice\0secret".to_vec())
        }
    );
    assert_eq!(
        body("a AUTHENTICATE EXTERNAL =\r\n"),
        C::Authenticate {
            mechanism: "EXTERNAL".into(),
            initial: Some(vec![])
        }
    );
    assert_eq!(
        body("a CREATE Sent (USE (\\Sent))\r\n"),
        C::Create {
            mailbox: "Sent".into(),
            special_use: vec!["\\Sent".into()]
        }
    );
    assert_eq!(
        body(
            "a LIST (SPECIAL-USE) \"\" (INBOX %) RETURN (SUBSCRIBED STATUS (MESSAGES UNSEEN))\r\n"
        ),
        C::List(ListCommand {
            reference: "".into(),
            patterns: vec!["INBOX".into(), "%".into()],
            select: vec!["SPECIAL-USE".into()],
            returns: vec!["SUBSCRIBED".into()],
            return_status: Some(vec![StatusItem::Messages, StatusItem::Unseen]),
        })
    );
    assert_eq!(
        body("a LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n"),
        C::List(ListCommand {
            reference: "".into(),
            patterns: vec!["*".into()],
            returns: vec!["SPECIAL-USE".into()],
            ..Default::default()
        })
    );
    assert_eq!(
        body("a STORE 1 (UNCHANGEDSINCE 12345) -FLAGS.SILENT (\\Seen $Label1)\r\n"),
        C::Store {
            uid: false,
            set: set("1"),
            unchanged_since: Some(12345),
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![Flag::Seen, Flag::Keyword("$Label1".into())],
        }
    );
    assert_eq!(
        body("a STORE 1 FLAGS ()\r\n"),
        C::Store {
            uid: false,
            set: set("1"),
            unchanged_since: None,
            mode: StoreMode::Replace,
            silent: false,
            flags: vec![],
        }
    );
    assert_eq!(
        body("a GETMETADATA (DEPTH infinity MAXSIZE 1024) INBOX /private/comment\r\n"),
        C::GetMetadata {
            mailbox: "INBOX".into(),
            max_size: Some(1024),
            depth: MetadataDepth::Infinity,
            entries: vec!["/private/comment".into()],
        }
    );
    assert_eq!(
        body("a GETMETADATA INBOX (MAXSIZE 10) (/a /b)\r\n"),
        C::GetMetadata {
            mailbox: "INBOX".into(),
            max_size: Some(10),
            depth: MetadataDepth::Zero,
            entries: vec!["/a".into(), "/b".into()],
        }
    );
    assert_eq!(
        body("a SETMETADATA INBOX (/private/comment NIL)\r\n"),
        C::SetMetadata {
            mailbox: "INBOX".into(),
            entries: vec![("/private/comment".into(), None)]
        }
    );
    assert_eq!(body("a GETQUOTA \"\"\r\n"), C::GetQuota { root: "".into() });
}

#[test]
fn search_grammar() {
    use SearchKey as K;
    let crit = |s: &str| match body(s) {
        C::Search { criteria, .. } => criteria,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        crit("a UID SEARCH OR (SEEN UNDELETED) NOT UID 1:5 HEADER Chat-Version \"\"\r\n"),
        K::And(vec![
            K::Or(
                Box::new(K::And(vec![K::Seen, K::Undeleted])),
                Box::new(K::Not(Box::new(K::Uid(set("1:5"))))),
            ),
            K::Header("Chat-Version".into(), vec![]),
        ])
    );
    assert_eq!(
        crit("a SEARCH 2,4:* LARGER 100 SMALLER 5000 SENTON \"3-Mar-2024\" KEYWORD $Junk\r\n"),
        K::And(vec![
            K::SequenceSet(set("2,4:*")),
            K::Larger(100),
            K::Smaller(5000),
            K::SentOn(Date::new(2024, 3, 3).unwrap()),
            K::Keyword("$Junk".into()),
        ])
    );
    assert_eq!(
        crit("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n"),
        K::ModSeq {
            entry: Some(("/flags/\\draft".into(), "all".into())),
            modseq: 620162338
        }
    );
    assert_eq!(
        crit("a SEARCH MODSEQ 5\r\n"),
        K::ModSeq {
            entry: None,
            modseq: 5
        }
    );
    assert_eq!(crit("a SEARCH YOUNGER 3600\r\n"), K::Younger(3600));
    let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(40), ")".repeat(40));
    assert!(bad(&deep).1.contains("deeply"));
    let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(40));
    assert!(bad(&nots).1.contains("deeply"));
    assert!(bad("a SEARCH SINCE 30-Feb-2024\r\n").1.contains("date"));
}

#[test]
fn fetch_sections_and_partials() {
    let items = |s: &str| match body(s) {
        C::Fetch { items, .. } => items,
        other => panic!("{other:?}"),
    };
    let sec = |part: Vec<u32>, text: Option<SectionText>, partial| FetchItem::BodySection {
        peek: false,
        section: Section { part, text },
        partial,
    };
    assert_eq!(
        items("a FETCH 1 (BODY[1.2.MIME] BODY[3.HEADER]<0.100> BODY[TEXT] BODY[2] BODYSTRUCTURE BODY ENVELOPE RFC822.HEADER RFC822.TEXT RFC822 MODSEQ)\r\n"),
        vec![
            sec(vec![1, 2], Some(SectionText::Mime), None),
            sec(vec![3], Some(SectionText::Header), Some((0, 100))),
            sec(vec![], Some(SectionText::Text), None),
            sec(vec![2], None, None),
            FetchItem::BodyStructure,
            FetchItem::Body,
            FetchItem::Envelope,
            FetchItem::Rfc822Header,
            FetchItem::Rfc822Text,
            FetchItem::Rfc822,
            FetchItem::ModSeq,
        ]
    );
    assert_eq!(
        items("a FETCH 1 BODY.PEEK[1.HEADER.FIELDS.NOT (Received \"X-Y\")]\r\n"),
        vec![FetchItem::BodySection {
            peek: true,
            section: Section {
                part: vec![1],
                text: Some(SectionText::HeaderFieldsNot(vec![
                    "Received".into(),
                    "X-Y".into()
                ])),
            },
            partial: None,
        }]
    );
    assert_eq!(items("a FETCH 1 fast\r\n").len(), 3);
    assert_eq!(items("a FETCH 1 ALL\r\n").len(), 4);
    for b in [
        "a FETCH 1 BODY[MIME]\r\n",
        "a FETCH 1 BODY[0]\r\n",
        "a FETCH 1 BODY[1.]\r\n",
        "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
        "a FETCH 1 BODY[]<1.0>\r\n",
        "a FETCH 1 BODY.PEEK\r\n",
        "a FETCH 1 (FLAGS\r\n",
        "a FETCH 0 FLAGS\r\n",
        "a FETCH 1 FLAGS (CHANGEDSINCE x)\r\n",
    ] {
        assert_eq!(bad(b).0.as_deref(), Some("a"), "{b}");
    }
}
