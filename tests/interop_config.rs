//! The Dovecot/Postfix example config parses, and `identity: xclient` is
//! only accepted where it is safe (an SMTP route without a PROXY header).

use std::path::Path;

use frontdoor::config::{Config, IdentityMode};

const EXAMPLE: &str = include_str!("../examples/dovecot-postfix.yaml");

#[test]
fn example_parses_with_proxy_v2_routes() {
    let cfg = Config::parse(Path::new("examples/dovecot-postfix.yaml"), EXAMPLE)
        .unwrap_or_else(|e| panic!("{e}"));
    let smtp = &cfg.routes[cfg.route_by_name("smtp").unwrap()];
    assert_eq!(smtp.identity, IdentityMode::ProxyHeader);
    assert_eq!(smtp.proxy_protocol, frontdoor::proxy_protocol::Version::V2);
}

#[test]
fn example_xclient_variant_parses() {
    let text = EXAMPLE.replace(
        "    backend: \"unix:/var/spool/postfix/public/frontdoor-submission\"\n    proxy_protocol: v2\n",
        "    backend: \"unix:/var/spool/postfix/public/frontdoor-xclient\"\n    proxy_protocol: none\n    identity: xclient\n",
    );
    assert_ne!(
        text, EXAMPLE,
        "the example's smtp route changed; update this test"
    );
    let cfg = Config::parse(Path::new("x.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let smtp = &cfg.routes[cfg.route_by_name("smtp").unwrap()];
    assert_eq!(smtp.identity, IdentityMode::Xclient);
}

fn problems(routes: &str) -> String {
    let text = format!("listeners:\n  - bind: \"127.0.0.1:0\"\nroutes:\n{routes}");
    match Config::parse(Path::new("t.yaml"), &text) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn xclient_needs_smtp_without_proxy_header() {
    let e = problems(
        "  smtp:\n    alpn: [smtp]\n    backend: \"127.0.0.1:1588\"\n    identity: xclient\n",
    );
    assert!(
        e.contains("t.yaml:7") && e.contains("needs proxy_protocol: none"),
        "{e}"
    );
    let e = problems("  imap:\n    alpn: [imap]\n    backend: \"127.0.0.1:1143\"\n    proxy_protocol: none\n    identity: xclient\n");
    assert!(e.contains("for SMTP routes only"), "{e}");
    let e = problems(
        "  smtp:\n    alpn: [smtp]\n    backend: \"127.0.0.1:1588\"\n    identity: sasl\n",
    );
    assert!(e.contains("unknown value \"sasl\""), "{e}");
    let ok = problems("  smtp:\n    alpn: [smtp]\n    backend: \"127.0.0.1:1588\"\n    proxy_protocol: none\n    identity: xclient\n");
    assert!(ok.is_empty(), "{ok}");
}
