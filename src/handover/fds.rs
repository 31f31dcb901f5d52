//! Passing file descriptors over a Unix stream socket (`SCM_RIGHTS`), on
//! tokio's non-blocking sockets, with owned descriptors only.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Most descriptors one message carries (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS: usize = 250;
/// Most bytes of the line the descriptors travel with.
pub const MAX_LINE: usize = 64 * 1024;

/// Send `line` with `fds` attached, in one `sendmsg` (then the rest of
/// `line`, if the socket took only part of it).
pub async fn send(stream: &UnixStream, line: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many sockets to hand over",
        ));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut sent = loop {
        stream.writable().await?;
        let r = stream.try_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("control buffer too small"));
            }
            sendmsg(
                stream,
                &[IoSlice::new(line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )
            .map_err(io::Error::from)
        });
        match r {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    while sent < line.len() {
        stream.writable().await?;
        match stream.try_write(&line[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Receive one line (up to and without its `\n`) and every descriptor that
/// came with it. EOF before the line ends is an error.
pub async fn recv_line(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await?;
        let r = stream.try_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            let mut received = Vec::new();
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(it) = m {
                    received.extend(it);
                }
            }
            Ok((got.bytes, received))
        });
        let (n, received) = match r {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        fds.extend(received);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the line ended",
            ));
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            if end + 1 != line.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bytes after the line",
                ));
            }
            line.truncate(end);
            return Ok((line, fds));
        }
        if line.len() > MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn a_listening_socket_crosses_and_still_accepts() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send(&a, b"one socket\n", &[l.as_fd()]).await.unwrap();
        drop(l);
        let (line, mut fds) = recv_line(&b).await.unwrap();
        assert_eq!(line, b"one socket");
        assert_eq!(fds.len(), 1);
        let got = std::net::TcpListener::from(fds.remove(0));
        assert_eq!(got.local_addr().unwrap(), addr);
        let _c = std::net::TcpStream::connect(addr).unwrap();
        got.accept().unwrap();
    }

    #[tokio::test]
    async fn eof_before_the_line_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, b"half", &[]).await.unwrap();
        drop(a);
        assert!(recv_line(&b).await.is_err());
    }
}
