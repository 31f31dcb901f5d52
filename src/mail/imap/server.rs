//! The IMAP listener of the bundled mail servers: binds nothing itself
//! (`mail::start` binds `mail.imap.listen`), it only runs the accept
//! loop that reads the PROXY header (required, trusted sources only, as for
//! submission) and hands each connection to [`session::serve`].

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::{self, ImapContext};
use crate::mail::listener::{spawn_accept_loop, Intro, Listener};
use crate::mail::peer::TrustPolicy;

/// Accept IMAP sessions on `listener` until `shutdown`.
pub fn spawn(
    listener: Listener,
    ctx: Arc<ImapContext>,
    trust: Arc<TrustPolicy>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    spawn_accept_loop(
        "imap",
        listener,
        Intro::ProxyRequired,
        trust,
        shutdown,
        tracker,
        move |conn, peer| {
            let ctx = ctx.clone();
            async move {
                let _ = session::serve(conn, peer, ctx).await;
            }
        },
    );
}
