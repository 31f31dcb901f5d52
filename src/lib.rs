//! frontdoor: a TLS front door for mail hosts.
//!
//! One port (443) terminates TLS, authenticates clients by the pinned public
//! key of their certificate, routes by ALPN/SNI, and hands each connection to
//! a backend behind a PROXY v2 header. `main.rs` only wires the CLI to this
//! library, so tests and examples use the same API.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accept;
pub mod acme;
pub mod auth;
pub mod config;
pub mod diagnostics;
pub mod frontdoor;
pub mod handover;
pub mod http_head;
pub mod identity_secret;
pub mod log_safe;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod proxy_protocol;
pub mod proxy_read;
pub mod ready;
pub mod registry;
pub mod serve;
pub mod smtp_reply;
pub mod throttle;
pub mod tls;
pub mod web;
