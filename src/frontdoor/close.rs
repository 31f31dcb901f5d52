//! Why a connection ended. One `CloseReason` per way out of a connection:
//! its `Display` is the `reason` field of the close log line, its `label`
//! a short name from a fixed set, fit for a metric label. Handshake failures
//! are classified once, where they happen (`HandshakeFailure`), so nothing
//! downstream inspects error text.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::relay::End;
use super::xclient::XclientError;

/// Why a TLS handshake failed, from a fixed set (the
/// `frontdoor_handshake_failures` metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    NoApplicationProtocol,
    ClientCertificateRefused,
    ClientCertificateMissing,
    Incompatible,
    InvalidMessage,
    AlertReceived,
    TlsError,
    Eof,
    IoError,
    Timeout,
}

impl HandshakeFailure {
    /// Classify a handshake error: the TLS stream reports rustls errors
    /// wrapped in an `io::Error`.
    pub fn classify(e: &io::Error) -> Self {
        use rustls::Error as E;
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(E::NoApplicationProtocol) => Self::NoApplicationProtocol,
            Some(E::InvalidCertificate(_)) => Self::ClientCertificateRefused,
            Some(E::NoCertificatesPresented) => Self::ClientCertificateMissing,
            Some(E::PeerIncompatible(_)) => Self::Incompatible,
            Some(E::InvalidMessage(_)) => Self::InvalidMessage,
            Some(E::AlertReceived(_)) => Self::AlertReceived,
            Some(_) => Self::TlsError,
            None if e.kind() == io::ErrorKind::UnexpectedEof => Self::Eof,
            None => Self::IoError,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NoApplicationProtocol => "no_application_protocol",
            Self::ClientCertificateRefused => "client_certificate_refused",
            Self::ClientCertificateMissing => "client_certificate_missing",
            Self::Incompatible => "incompatible",
            Self::InvalidMessage => "invalid_message",
            Self::AlertReceived => "alert_received",
            Self::TlsError => "tls_error",
            Self::Eof => "eof",
            Self::IoError => "io_error",
            Self::Timeout => "timeout",
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum CloseReason {
    /// The upstream's PROXY header named an address at
    /// `limits.per_ip_connections`.
    PerIpLimit,
    BadUpstreamHeader {
        upstream: SocketAddr,
        error: io::Error,
    },
    NoUpstreamHeader,
    /// The address is throttled for client key failures.
    Throttled,
    /// The client closed (or failed) before a whole ClientHello came.
    NoClientHello(io::Error),
    /// No whole ClientHello within the handshake timeout (passthrough
    /// listeners peek at it before any TLS).
    HelloTimeout,
    HandshakeFailed {
        kind: HandshakeFailure,
        error: io::Error,
    },
    HandshakeTimeout,
    ShutdownDuringHandshake,
    TlsStateLost,
    AcmeAnswered,
    /// A resumed session whose key left the registry, under
    /// `unknown_key: reject`.
    UnknownKeyResumed,
    AccountMissing,
    AccountsUnreadable,
    NoRoute,
    KeyRequired,
    /// A built-in web side (status page, chatmail web side) was done.
    BuiltinServed,
    BackendUnreachable(io::Error),
    ProxyHeaderNotWritten,
    GreetingNotWritten,
    Xclient(XclientError),
    /// The relay ended.
    Relay(End),
    /// A CONNECT request was refused (the reply says how).
    ConnectRefused(super::connect::Refused),
    /// A CONNECT tunnel ended; `inner` is its inner connection's id.
    TunnelClosed {
        inner: String,
    },
}

impl CloseReason {
    /// A handshake failure, classified.
    pub fn handshake_failed(error: io::Error) -> Self {
        Self::HandshakeFailed {
            kind: HandshakeFailure::classify(&error),
            error,
        }
    }

    /// The handshake failure this stands for, if any (a ClientHello that
    /// never came to a passthrough listener is not counted as one).
    pub fn handshake_failure(&self) -> Option<HandshakeFailure> {
        match self {
            Self::HandshakeFailed { kind, .. } => Some(*kind),
            Self::HandshakeTimeout => Some(HandshakeFailure::Timeout),
            _ => None,
        }
    }

    /// A short name from a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PerIpLimit => "per_ip_limit",
            Self::BadUpstreamHeader { .. } => "bad_upstream_header",
            Self::NoUpstreamHeader => "no_upstream_header",
            Self::Throttled => "throttled",
            Self::NoClientHello(_) => "no_client_hello",
            Self::HelloTimeout => "hello_timeout",
            Self::HandshakeFailed { kind, .. } => kind.label(),
            Self::HandshakeTimeout => "handshake_timeout",
            Self::ShutdownDuringHandshake => "shutdown_during_handshake",
            Self::TlsStateLost => "tls_state_lost",
            Self::AcmeAnswered => "acme_answered",
            Self::UnknownKeyResumed => "unknown_key",
            Self::AccountMissing => "account_missing",
            Self::AccountsUnreadable => "accounts_unreadable",
            Self::NoRoute => "no_route",
            Self::KeyRequired => "key_required",
            Self::BuiltinServed => "closed",
            Self::BackendUnreachable(_) => "backend_unreachable",
            Self::ProxyHeaderNotWritten => "proxy_header_not_written",
            Self::GreetingNotWritten => "greeting_not_written",
            Self::Xclient(_) => "xclient_failed",
            Self::Relay(End::Done) => "closed",
            Self::Relay(End::Idle) => "idle_timeout",
            Self::Relay(End::Stopped(_)) => "stopped",
            Self::Relay(End::ClientError(_)) => "client_error",
            Self::Relay(End::BackendError(_)) => "backend_error",
            Self::ConnectRefused(_) => "connect_refused",
            Self::TunnelClosed { .. } => "tunnel_closed",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerIpLimit => f.write_str("per-address connection limit reached"),
            Self::BadUpstreamHeader { upstream, error } => {
                write!(f, "bad PROXY header from upstream {upstream}: {error}")
            }
            Self::NoUpstreamHeader => {
                f.write_str("no PROXY header from upstream within the handshake timeout")
            }
            Self::Throttled => f.write_str("too many client key failures from this address"),
            Self::NoClientHello(e) => write!(f, "closed before a ClientHello: {e}"),
            Self::HelloTimeout | Self::HandshakeTimeout => f.write_str("handshake timeout"),
            Self::HandshakeFailed { error, .. } => write!(f, "handshake failed: {error}"),
            Self::ShutdownDuringHandshake => f.write_str("shutdown during handshake"),
            Self::TlsStateLost => f.write_str("TLS state lost after the handshake"),
            Self::AcmeAnswered => f.write_str("ACME tls-alpn-01 validation answered"),
            Self::UnknownKeyResumed => f.write_str("unknown client key (resumed session)"),
            Self::AccountMissing => f.write_str("pinned key's account does not exist"),
            Self::AccountsUnreadable => f.write_str("accounts unreadable"),
            Self::NoRoute => f.write_str(
                "no route for this connection (no ALPN, no SNI route, no default_route)",
            ),
            Self::KeyRequired => f.write_str("a pinned client key is required here"),
            Self::BuiltinServed => f.write_str("closed"),
            Self::BackendUnreachable(e) => write!(f, "backend unreachable: {e}"),
            Self::ProxyHeaderNotWritten => {
                f.write_str("backend closed before the PROXY header was written")
            }
            Self::GreetingNotWritten => f.write_str("client gone before the greeting was written"),
            Self::Xclient(e) => write!(f, "XCLIENT prelude failed: {e}"),
            Self::Relay(end) => end.fmt(f),
            Self::ConnectRefused(r) => write!(f, "CONNECT refused ({}): {r}", r.status()),
            Self::TunnelClosed { inner } => write!(f, "tunnel closed (inner connection {inner})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_and_labels() {
        let refused = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let r = CloseReason::handshake_failed(refused);
        assert_eq!(
            r.handshake_failure(),
            Some(HandshakeFailure::ClientCertificateRefused)
        );
        assert_eq!(r.label(), "client_certificate_refused");
        assert!(r.to_string().starts_with("handshake failed: "), "{r}");

        let eof = CloseReason::handshake_failed(io::ErrorKind::UnexpectedEof.into());
        assert_eq!(eof.label(), "eof");
        assert_eq!(
            CloseReason::HandshakeTimeout
                .handshake_failure()
                .map(HandshakeFailure::label),
            Some("timeout")
        );
        // Same log text, but a hello that never came is no handshake failure.
        assert_eq!(CloseReason::HelloTimeout.to_string(), "handshake timeout");
        assert_eq!(CloseReason::HelloTimeout.handshake_failure(), None);

        let upstream: SocketAddr = "192.0.2.1:5".parse().unwrap();
        let bad = CloseReason::BadUpstreamHeader {
            upstream,
            error: io::Error::other("no signature"),
        };
        assert_eq!(
            bad.to_string(),
            "bad PROXY header from upstream 192.0.2.1:5: no signature"
        );
        assert_eq!(CloseReason::Relay(End::Idle).to_string(), "idle timeout");
        assert_eq!(
            CloseReason::Relay(End::Stopped("shutdown: drain grace period over")).to_string(),
            "shutdown: drain grace period over"
        );
        assert_eq!(CloseReason::Relay(End::Done).label(), "closed");
    }
}
