//! What a backend hears before the client's first byte: the PROXY header
//! (none, v1, or v2 with the TLS facts and the identity TLVs), then, on an
//! XCLIENT route, the SMTP exchange whose fresh greeting becomes the
//! client's greeting. Each write and exchange is bounded by
//! `timeouts.connect`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::close::CloseReason;
use super::conn::Peer;
use super::xclient;
use crate::config::Route;
use crate::proxy_protocol::{self, ConnInfo, IdentityTlvs, SslInfo, Version};

/// The PROXY header for `version`; `v2` gives the v2 facts and the
/// identity secret, and is called only for v2.
pub fn proxy_header(
    version: Version,
    src: SocketAddr,
    dst: SocketAddr,
    v2: impl FnOnce() -> (ConnInfo, Option<Arc<[u8]>>),
) -> Vec<u8> {
    match version {
        Version::None => Vec::new(),
        Version::V1 => proxy_protocol::encode_v1(src, dst),
        Version::V2 => {
            let (info, secret) = v2();
            proxy_protocol::encode_v2(&info, secret.as_deref())
        }
    }
}

/// Write `header` (if any) to the backend within `timeout`.
pub async fn send_proxy_header<B: AsyncWrite + Unpin>(
    be: &mut B,
    header: Vec<u8>,
    timeout: Duration,
) -> Result<(), CloseReason> {
    if header.is_empty() {
        return Ok(());
    }
    let w = tokio::time::timeout(timeout, be.write_all(&header)).await;
    // Freed now, not when the connection ends.
    drop(header);
    match w {
        Ok(Ok(())) => Ok(()),
        _ => Err(CloseReason::ProxyHeaderNotWritten),
    }
}

/// Tell the backend (Postfix) the login and client address by XCLIENT and
/// pass its fresh greeting on to the client. On a backend failure the
/// client hears a 421 and the stream is shut down.
pub async fn xclient<C, B>(
    tls: &mut C,
    be: &mut B,
    peer: &Peer,
    route: &Route,
    timeout: Duration,
) -> Result<(), CloseReason>
where
    C: AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let login = peer.identity.as_ref().map(|i| i.login.as_str());
    let helo = peer.sni.as_deref().unwrap_or("frontdoor");
    match Box::pin(xclient::xclient_prelude_for(
        be, login, peer.addr, helo, timeout,
    ))
    .await
    {
        Ok(greeting) => {
            let w = tokio::time::timeout(timeout, tls.write_all(&greeting)).await;
            if !matches!(w, Ok(Ok(()))) {
                return Err(CloseReason::GreetingNotWritten);
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(id = %peer.id, route = %route.name, backend = %route.backend, error = %e, fault = ?e.fault(), "XCLIENT prelude failed");
            let _ = tokio::time::timeout(timeout, async {
                let _ = tls
                    .write_all(b"421 4.3.2 Service not available, try again later\r\n")
                    .await;
                let _ = tls.shutdown().await;
            })
            .await;
            Err(CloseReason::Xclient(e))
        }
    }
}

/// The PROXY v2 facts of a terminated connection.
pub fn conn_info(peer: &Peer, sig_alg: String, key_alg: String) -> ConnInfo {
    let identity = peer.identity.as_ref().map(|i| IdentityTlvs {
        account: i.account.clone(),
        login: i.login.clone(),
        key_name: i.key_name.clone(),
        fingerprint: i.fingerprint,
        no_imap_preauth: !i.imap_preauth,
    });
    ConnInfo {
        src: peer.addr,
        dst: peer.local,
        alpn: peer.alpn.clone(),
        authority: peer.sni.clone(),
        unique_id: Some(peer.id.as_bytes().to_vec()),
        ssl: Some(SslInfo {
            client_cert: peer.client_cert,
            verified: peer.identity.is_some(),
            version: peer.tls_version.clone(),
            cipher: peer.cipher.clone(),
            sig_alg: Some(sig_alg),
            key_alg: Some(key_alg),
            cn: peer.identity.as_ref().map(|i| i.login.clone()),
            resumed: peer.resumed,
        }),
        identity,
    }
}

/// The PROXY v2 facts of a passthrough connection (no TLS terminated here).
pub fn passthrough_info(
    src: SocketAddr,
    dst: SocketAddr,
    sni: Option<String>,
    id: &str,
) -> ConnInfo {
    ConnInfo {
        src,
        dst,
        alpn: None,
        authority: sni,
        unique_id: Some(id.as_bytes().to_vec()),
        ssl: None,
        identity: None,
    }
}
