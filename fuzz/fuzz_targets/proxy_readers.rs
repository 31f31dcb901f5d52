//! Arbitrary bytes arriving in pieces at the two async PROXY header
//! readers: the bundled backends' (`mail::peer::read_proxy_header`) and the
//! front door's, for a header from an upstream load balancer
//! (`frontdoor::upstream::read_header`). Each must agree with the pure
//! decoder on the same bytes, read exactly the header and not one byte of
//! what follows it, and refuse the rest.
#![no_main]

#[path = "../common/chunked.rs"]
mod chunked;

use std::sync::OnceLock;
use std::time::Duration;

use chunked::Chunked;
use frontdoor::frontdoor::upstream;
use frontdoor::mail::peer::{read_proxy_header, Source, TrustPolicy};
use frontdoor::proxy_protocol::{decode, Command, Decoded};
use libfuzzer_sys::fuzz_target;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let reference = decode(data);
    let complete = match &reference {
        Ok(Decoded::Complete { header, len }) => Some((header.clone(), *len)),
        _ => None,
    };
    rt().block_on(async {
        // The bundled backends, from a trusted source (a Unix socket peer of
        // an allowed uid, so that an identity needs no HMAC).
        let mut r = Chunked::new(data, u32::from(seed) * 2_654_435_761);
        let trust = TrustPolicy {
            unix_uids: vec![1000],
            ..TrustPolicy::default()
        };
        let got = read_proxy_header(
            &mut r,
            Source::Unix { uid: Some(1000) },
            &trust,
            Duration::from_secs(10),
        )
        .await;
        match (&got, &complete) {
            (Ok(peer), Some((h, len))) => {
                assert_eq!(r.data, &data[*len..], "bytes after the header were read");
                // From a Unix socket, the header's client address or none.
                assert_eq!(peer.client_addr, h.addrs.map(|(s, _)| s));
                if h.command == Command::Local {
                    assert!(peer.identity.is_none(), "LOCAL carried an identity");
                } else {
                    assert_eq!(peer.identity, h.identity());
                }
                assert_eq!(peer.alpn.as_deref(), h.alpn());
                assert_eq!(peer.sni.as_deref(), h.authority());
            }
            (Ok(_), None) => panic!("peer reader accepted what decode refuses: {reference:?}"),
            (Err(e), Some(_)) => panic!("peer reader refused a complete header: {e}"),
            (Err(_), None) => {}
        }

        // The front door, behind a load balancer.
        let mut r = Chunked::new(data, u32::from(seed) * 40_503 + 1);
        let got = upstream::read_header(&mut r).await;
        match (&got, &complete) {
            (Ok(addrs), Some((h, len))) => {
                assert_eq!(r.data, &data[*len..], "bytes after the header were read");
                assert_eq!(*addrs, h.addrs);
            }
            (Ok(_), None) => panic!("upstream reader accepted what decode refuses: {reference:?}"),
            (Err(e), Some(_)) => panic!("upstream reader refused a complete header: {e}"),
            (Err(_), None) => {}
        }
    });
});
