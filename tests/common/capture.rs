//! Capture backends: TCP servers that record the PROXY header each
//! connection brought, greet, and echo.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a capture backend saw on one connection.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The PROXY header bytes exactly as received (empty for `none`).
    pub header: Vec<u8>,
    pub peer: SocketAddr,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    V2,
    V1,
    None,
}

/// A backend that reads the PROXY header, greets with `<name> ready\r\n`,
/// then echoes every byte back. It records each header it received.
pub struct CaptureBackend {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub seen: Arc<Mutex<Vec<Captured>>>,
}

impl CaptureBackend {
    pub async fn start(name: &'static str, expect: Expect) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = l.accept().await else {
                    return;
                };
                let seen = s2.clone();
                tokio::spawn(async move {
                    let header = match read_header(&mut s, expect).await {
                        Some(h) => h,
                        None => return,
                    };
                    seen.lock().unwrap().push(Captured { header, peer });
                    if s.write_all(format!("{name} ready\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Self { addr, name, seen }
    }

    pub fn headers(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_header(s: &mut TcpStream, expect: Expect) -> Option<Vec<u8>> {
    match expect {
        Expect::None => Some(Vec::new()),
        Expect::V2 => {
            let mut h = vec![0u8; 16];
            s.read_exact(&mut h).await.ok()?;
            let len = u16::from_be_bytes([h[14], h[15]]) as usize;
            let mut rest = vec![0u8; len];
            s.read_exact(&mut rest).await.ok()?;
            h.extend_from_slice(&rest);
            Some(h)
        }
        Expect::V1 => {
            let mut h = Vec::new();
            let mut b = [0u8; 1];
            while !h.ends_with(b"\r\n") && h.len() < 108 {
                s.read_exact(&mut b).await.ok()?;
                h.push(b[0]);
            }
            Some(h)
        }
    }
}
