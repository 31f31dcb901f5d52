//! A DNS server for tests: Debian's dnsmasq in the foreground on a
//! loopback address, no upstream, no hosts file, only the records given;
//! killed on drop. Ready when it answers a query for the first record.
//!
//! Names under `localhost.` cannot be used: hickory-resolver (which
//! frontdoor queries through) answers them itself as RFC 6761 asks,
//! loopback for A/AAAA and nothing for every other type, without asking
//! any server. Tests use `.test` names (RFC 6761 §6.2) instead.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One record dnsmasq publishes.
#[derive(Debug, Clone)]
pub enum Record {
    /// A TXT record; a value over 255 bytes is split into strings.
    Txt(String, String),
    /// An A or AAAA record (by the address family).
    Addr(String, IpAddr),
    /// `name MX pref host`.
    Mx(String, String, u16),
    /// `name CNAME target`; dnsmasq answers only for a target it knows
    /// (an [`Record::Addr`] here).
    Cname(String, String),
    /// `name SRV prio weight port target`.
    Srv(String, String, u16, u16, u16),
}

impl Record {
    pub fn txt(name: &str, value: &str) -> Record {
        Record::Txt(name.into(), value.into())
    }
    pub fn addr(name: &str, ip: &str) -> Record {
        Record::Addr(name.into(), ip.parse().unwrap())
    }
    pub fn mx(name: &str, host: &str, pref: u16) -> Record {
        Record::Mx(name.into(), host.into(), pref)
    }
    pub fn cname(name: &str, target: &str) -> Record {
        Record::Cname(name.into(), target.into())
    }
    pub fn srv(name: &str, target: &str, port: u16) -> Record {
        Record::Srv(name.into(), target.into(), port, 0, 1)
    }

    fn name(&self) -> &str {
        match self {
            Record::Txt(n, _)
            | Record::Addr(n, _)
            | Record::Mx(n, _, _)
            | Record::Cname(n, _)
            | Record::Srv(n, _, _, _, _) => n,
        }
    }

    /// The query type (RFC 1035 §3.2.2, RFC 3596, RFC 2782).
    fn qtype(&self) -> u16 {
        match self {
            Record::Txt(..) => 16,
            Record::Addr(_, IpAddr::V4(_)) => 1,
            Record::Addr(_, IpAddr::V6(_)) => 28,
            Record::Mx(..) => 15,
            Record::Cname(..) => 5,
            Record::Srv(..) => 33,
        }
    }

    fn arg(&self) -> String {
        match self {
            Record::Txt(name, value) => {
                // One TXT record of strings of at most 255 bytes (RFC 1035 §3.3.14).
                let parts: Vec<String> = value
                    .as_bytes()
                    .chunks(250)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                format!("--txt-record={name},{}", parts.join(","))
            }
            Record::Addr(name, ip) => format!("--host-record={name},{ip}"),
            Record::Mx(name, host, pref) => format!("--mx-host={name},{host},{pref}"),
            Record::Cname(name, target) => format!("--cname={name},{target}"),
            Record::Srv(name, target, port, prio, weight) => {
                format!("--srv-host={name},{target},{port},{prio},{weight}")
            }
        }
    }
}

/// A running dnsmasq; killed on drop.
pub struct Dns {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS query for `name` of type `qtype` (RFC 1035 §4.1).
pub fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// A free UDP port on 127.0.0.1.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start dnsmasq on `addr` (an IPv4 loopback address) with `records`.
pub fn start(addr: SocketAddr, records: &[Record]) -> Dns {
    assert!(
        !records.is_empty(),
        "dnsmasq needs a record to check readiness"
    );
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--pid-file=",
        "--user=root",
    ]);
    cmd.arg(format!("--listen-address={}", addr.ip()))
        .arg(format!("--port={}", addr.port()));
    for r in records {
        cmd.arg(r.arg());
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq is needed for this test (.ci/setup installs dnsmasq-base)");
    let dns = Dns { child, addr };
    let sock = UdpSocket::bind((addr.ip(), 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let q = query(records[0].name(), records[0].qtype());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        assert!(Instant::now() < deadline, "dnsmasq did not answer");
        let _ = sock.send_to(&q, addr);
        if let Ok(n) = sock.recv(&mut buf) {
            // Header (12 bytes): an answer count of at least one.
            if n > 12 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                return dns;
            }
        }
    }
    panic!("dnsmasq did not answer on {addr}");
}
