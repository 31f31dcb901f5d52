//! The front door: listener, handshake, routing, backend connect, relay.

pub mod xclient;
