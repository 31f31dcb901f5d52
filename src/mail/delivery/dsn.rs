//! Delivery status notifications (RFC 3464, in a `multipart/report` of
//! RFC 6522): what the local sender finds in its INBOX when recipients of
//! its message were refused for good or the queue lifetime ran out. Pure:
//! the worker stores the bytes. Never made for a message with a null
//! sender or for a report itself ([`wants_dsn`]), so two systems cannot
//! bounce reports at each other.

use crate::mail::message::rfc5322_date;

/// A recipient the report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub rcpt: String,
    /// The peer's reply or our own reason.
    pub diagnostic: String,
    /// The MX host that refused, when one did.
    pub remote_mta: Option<String>,
    /// True when the queue lifetime ran out (status 4.4.7) rather than a
    /// permanent refusal.
    pub expired: bool,
}

/// The enhanced status code (RFC 3463) of a reply text such as
/// `RCPT TO: 550 5.1.1 No such user`, else `5.0.0` (or `4.4.7` for an
/// expired message).
pub fn status_of(f: &Failed) -> String {
    if f.expired {
        return "4.4.7".into();
    }
    for w in f.diagnostic.split_whitespace() {
        let parts: Vec<&str> = w.split('.').collect();
        if parts.len() == 3
            && (parts[0] == "5" || parts[0] == "4")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            // A permanent failure is reported as 5.x.x whatever a 4xx text said.
            return format!("5.{}.{}", parts[1], parts[2]);
        }
    }
    "5.0.0".into()
}

/// False for a null sender and for a message that is itself a delivery report.
pub fn wants_dsn(from: &str, msg: &[u8]) -> bool {
    if from.is_empty() || from.eq_ignore_ascii_case("mailer-daemon") {
        return false;
    }
    let head_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len().min(64 << 10));
    let head = String::from_utf8_lossy(&msg[..head_end]).to_ascii_lowercase();
    !(head.contains("report-type=delivery-status")
        || head.contains("report-type=\"delivery-status\""))
}

/// The header section of `msg` (up to and without the blank line).
fn headers_of(msg: &[u8]) -> &[u8] {
    match msg.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &msg[..i + 2],
        None => &msg[..msg.len().min(64 << 10)],
    }
}

/// Who reports to whom, and when.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The reporting host (`Reporting-MTA`, `Message-ID` domain).
    pub host: &'a str,
    /// The domain of `MAILER-DAEMON@`.
    pub domain: &'a str,
    /// The original sender, who gets the report.
    pub sender: &'a str,
    /// When the original was queued (Unix seconds).
    pub arrival: i64,
    /// When the report is made.
    pub now: i64,
    /// Unique per report: the queue id.
    pub token: &'a str,
}

/// The report about `failed` recipients of `original`.
pub fn build(r: Report<'_>, failed: &[Failed], original: &[u8]) -> Vec<u8> {
    let Report {
        host,
        domain,
        sender,
        arrival,
        now,
        token,
    } = r;
    let boundary = format!("{token}/{host}");
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {}\r\n\
         Message-ID: <{token}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\
         \r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         \r\n",
        rfc5322_date(now)
    ));
    for f in failed {
        let why = if f.expired {
            format!(
                "gave up after the queue lifetime; last error: {}",
                f.diagnostic
            )
        } else {
            f.diagnostic.clone()
        };
        m.push_str(&format!("<{}>: {}\r\n", f.rcpt, why));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         Arrival-Date: {}\r\n",
        rfc5322_date(arrival)
    ));
    for f in failed {
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.rcpt,
            status_of(f)
        ));
        if let Some(mta) = &f.remote_mta {
            m.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
        }
        m.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", f.diagnostic));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(headers_of(original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep<'a>(host: &'a str, domain: &'a str, sender: &'a str, token: &'a str) -> Report<'a> {
        Report {
            host,
            domain,
            sender,
            arrival: 0,
            now: 60,
            token,
        }
    }

    #[test]
    fn report_shape() {
        let orig = b"From: a@x\r\nSubject: hi\r\nMessage-ID: <m1@x>\r\n\r\nsecret body\r\n";
        let f = Failed {
            rcpt: "b@y".into(),
            diagnostic: "RCPT TO: 550 5.1.1 No such user".into(),
            remote_mta: Some("mx.y".into()),
            expired: false,
        };
        let d = String::from_utf8(build(rep("mx.x", "x", "a@x", "T1"), &[f], orig)).unwrap();
        assert!(d.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(d.contains("Final-Recipient: rfc822; b@y\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.y\r\nDiagnostic-Code: smtp; RCPT TO: 550 5.1.1 No such user\r\n"));
        assert!(d.contains("Message-ID: <m1@x>\r\n"));
        assert!(!d.contains("secret body"), "only the headers go back");
        assert!(d.ends_with("\r\n--T1/mx.x--\r\n"));
        assert!(d.contains("Auto-Submitted: auto-replied\r\n"));
    }

    #[test]
    fn statuses_and_no_report_for_a_report() {
        let f = |d: &str, expired| Failed {
            rcpt: "b@y".into(),
            diagnostic: d.into(),
            remote_mta: None,
            expired,
        };
        assert_eq!(status_of(&f("550 no", false)), "5.0.0");
        assert_eq!(status_of(&f("554 5.7.1 DKIM", false)), "5.7.1");
        assert_eq!(status_of(&f("451 4.4.1 later", true)), "4.4.7");
        assert!(!wants_dsn("", b"Subject: x\r\n\r\n"));
        let dsn = build(
            rep("h", "d", "a@d", "t"),
            &[f("550 x", false)],
            b"A: b\r\n\r\n",
        );
        assert!(!wants_dsn("a@d", &dsn));
        assert!(wants_dsn(
            "a@d",
            b"Subject: x\r\n\r\nreport-type=delivery-status\r\n"
        ));
    }
}
