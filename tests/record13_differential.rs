//! `record13` (the TLS 1.3 record layer after the handshake) against
//! rustls' own record layer: the same record streams, each sealed under its
//! connection's keys by the test's own sealer, must give the same plaintext,
//! the same close, the same failure and the same alert, and KeyUpdate
//! requests must be answered the same way (`fuzz/common/records.rs`, shared
//! with the `record13` fuzz target, which runs the same comparison on
//! fuzzed streams). Where the two differ by design the harness names the
//! difference; `known_differences_still_hold` keeps that list true.

#[path = "../fuzz/common/records.rs"]
#[allow(dead_code)]
mod records;
#[path = "../fuzz/common/tls_pair.rs"]
#[allow(dead_code)]
mod tls_pair;

use records::{differential, Ctx, Op, Verdict};
use tls_pair::Event;

fn rec(inner: &[u8]) -> Op {
    Op::Rec {
        outer: 23,
        version: [3, 3],
        inner: inner.to_vec(),
        len: None,
        flip: None,
    }
}

fn data(d: &[u8]) -> Op {
    let mut v = d.to_vec();
    v.push(23);
    rec(&v)
}

fn stream(ops: Vec<Op>) -> Vec<(Op, Ctx, Vec<usize>)> {
    let mut ctx = Ctx::default();
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            match &op {
                Op::KeyUpdate(_) => ctx.key_updates += 1,
                Op::Rec { inner, .. } if inner.len() > 1 && inner.last() == Some(&23) => {
                    ctx.key_updates = 0;
                    ctx.empty = 0;
                }
                Op::Rec { inner, .. } if inner[..] == [23] => ctx.empty += 1,
                Op::Rec { inner, .. } if inner.first() == Some(&1) && inner.last() == Some(&21) => {
                    ctx.warnings += 1
                }
                _ => {}
            }
            // Every third op arrives in pieces, one of them a single byte.
            let cuts = if i % 3 == 2 { vec![1, 7, 200] } else { vec![] };
            (op, ctx.clone(), cuts)
        })
        .collect()
}

fn all_suites(ops: Vec<Op>) -> Vec<Verdict> {
    let s = stream(ops);
    (0..tls_pair::SUITES.len())
        .map(|i| differential(i, &s))
        .collect()
}

#[test]
fn a_well_behaved_stream_agrees_in_every_suite() {
    let big = vec![7u8; 16_384];
    for v in all_suites(vec![
        data(b"hello"),
        data(&big),
        Op::KeyUpdate(1),
        data(b"after the update"),
        Op::Send(20_000),
        data(b""),
        rec(&[b'x', 23, 0, 0, 0, 0]),
        Op::KeyUpdate(0),
        data(b"more"),
        rec(&[1, 0, 21]),
    ]) {
        let Verdict::Agreed {
            ops,
            failed,
            closed,
            events,
        } = v
        else {
            panic!("{v:?}");
        };
        assert_eq!((ops, failed, closed), (10, false, true));
        // Our KeyUpdate answers the client's request, before our data.
        assert_eq!(events.first(), Some(&Event::KeyUpdate(0)));
        assert!(matches!(&events[1], Event::Data(d) if d.len() == 20_000));
    }
}

#[test]
fn refusals_agree_on_the_record_and_the_alert() {
    let flipped = Op::Rec {
        outer: 23,
        version: [3, 3],
        inner: b"data\x17".to_vec(),
        len: None,
        flip: Some((3, 0x40)),
    };
    let mut long = vec![1u8; 16_385];
    long.push(23);
    let cases: Vec<(Op, Option<u8>)> = vec![
        (flipped, Some(20)),          // bad_record_mac
        (Op::KeyUpdate(2), Some(47)), // illegal_parameter
        (rec(&[2, 40, 21]), None),    // the client's fatal alert: no answer
        (rec(&long), Some(22)),       // plaintext over 2^14: record_overflow
    ];
    for (op, alert) in cases {
        let v = differential(0, &stream(vec![data(b"x"), op.clone()]));
        let Verdict::Agreed {
            failed: true,
            events,
            ..
        } = &v
        else {
            panic!("{op:?}: {v:?}");
        };
        let want: Vec<Event> = alert.map(|a| Event::Alert(2, a)).into_iter().collect();
        assert_eq!(*events, want, "{op:?}");
    }
}

#[test]
fn known_differences_still_hold() {
    let valid = |version: [u8; 2], outer: u8, len: Option<u16>| Op::Rec {
        outer,
        version,
        inner: b"data\x17".to_vec(),
        len,
        flip: None,
    };
    let mut updates = vec![data(b"x")];
    updates.extend((0..33).map(|_| Op::KeyUpdate(0)));
    let mut empties = vec![data(b"x")];
    empties.extend((0..40).map(|_| data(b"")));
    for ops in [
        vec![data(b"x"), valid([4, 4], 23, None)],
        vec![data(b"x"), valid([3, 1], 23, None)],
        vec![data(b"x"), valid([3, 3], 99, None)],
        vec![data(b"x"), valid([3, 3], 23, Some(10))],
        vec![data(b"x"), rec(&[1, 42, 21])],
        vec![data(b"x"), rec(&[24, 0, 22])],
        vec![data(b"x"), Op::Raw(vec![99, 3, 3, 0, 1, 0])],
        vec![data(b"x"), rec(&[0, 0, 0])],
        vec![data(b"x"), rec(&[b'x', 99])],
        vec![data(b"x"), rec(&[&[1u8; 18_416][..], &[23]].concat())],
        updates,
        empties,
    ] {
        let last = format!("{:?}", ops.last());
        let v = differential(0, &stream(ops));
        assert!(
            matches!(v, Verdict::Known { .. }),
            "{last}: no longer differs: {v:?}"
        );
    }
}

/// The record13 fuzz target's one finding: an unprotected 0x17 byte, then
/// empty application data records. Empty application data is allowed
/// (RFC 8446 §5.1) and both accept it; the byte shifts the next header,
/// whose version 0x1703 record13 ignores (§5.1) and rustls refuses. The
/// harness names that difference instead of failing.
#[test]
fn fuzz_finding_raw_byte_before_empty_records_is_known() {
    let input = include_bytes!("../fuzz/corpus/record13/finding-raw-byte-shifts-framing");
    let (suite, ops) = records::generate(&mut records::Input(input));
    assert!(matches!(ops[0].0, Op::Raw(ref b) if b[..] == [0x17]));
    match differential(suite, &ops) {
        Verdict::Known { at: 1, why } => assert!(why.contains("0x1703"), "{why}"),
        v => panic!("expected the shifted-header difference at op 1: {v:?}"),
    }
    // Without the byte the same empty records agree, and nothing fails.
    let empties: Vec<_> = ops.into_iter().skip(1).map(|(op, ..)| op).collect();
    assert_eq!(empties.len(), 3);
    for v in all_suites(empties) {
        assert!(
            matches!(
                v,
                Verdict::Agreed {
                    failed: false,
                    closed: false,
                    ..
                }
            ),
            "{v:?}"
        );
    }
}

#[test]
fn random_streams_agree() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut agreed, mut known, mut compared) = (0, 0, 0);
    for _ in 0..120 {
        let n = 500 + (next() % 3500) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let (suite, ops) = records::generate(&mut records::Input(&bytes));
        if ops.is_empty() {
            continue;
        }
        let v = differential(suite, &ops);
        match v {
            Verdict::Agreed { ops, .. } => {
                agreed += 1;
                compared += ops;
            }
            Verdict::Known { at, .. } => {
                known += 1;
                compared += at;
            }
        }
    }
    // Streams are compared far, and many to their end or a common failure.
    println!("agreed {agreed}, known differences {known}, ops compared {compared}");
    assert!(
        agreed >= 50 && compared >= 1000,
        "agreed {agreed}, known {known}, compared {compared}"
    );
}
