//! Reading the head of one HTTP/1.1 request (up to the blank line), bounded
//! in size and time: the metrics endpoint's, which reads no request body
//! (the built-in web pages are served by hyper, `web::serve`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes of a request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long the whole head may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Read an HTTP request head (up to the blank line), at most `MAX_HEAD`
/// bytes within `READ_TIMEOUT`. `Err(bytes read)` when it did not come.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, usize> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if complete {
        Ok(head)
    } else {
        Err(head.len())
    }
}
