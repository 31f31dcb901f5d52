//! Pure helpers on message bytes: the `From:` header's addresses, the
//! `Received:` trace header, RFC 5322 dates.
//!
//! Header parsing is deliberately narrow: it reads only the header section
//! (up to the first empty line, at most [`MAX_HEADER`] bytes), unfolds
//! continuation lines and extracts addresses well enough to compare them
//! with an account's addresses; anything it cannot read yields no address,
//! which the caller treats as a mismatch (refuse rather than guess).

/// How much of a message is searched for the header section.
pub const MAX_HEADER: usize = 256 * 1024;

/// The unfolded value of every `name:` header field, in order.
pub fn header_values(msg: &[u8], name: &str) -> Vec<String> {
    let head = &msg[..msg.len().min(MAX_HEADER)];
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.trim_end().eq_ignore_ascii_case(name) {
                current = Some(v.trim().to_owned());
            }
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}

/// Addresses in an address-list header value: `<a@b>` forms, else bare
/// `a@b` words; lower-cased. Quoted display names are skipped.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Drop quoted strings and comments so that "x@y" <a@b> yields a@b.
    let mut clean = String::new();
    let (mut quoted, mut depth, mut escape) = (false, 0u32, false);
    for c in value.chars() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escape = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => clean.push(c),
        }
    }
    for part in clean.split(',') {
        let part = part.trim();
        let addr = match (part.find('<'), part.rfind('>')) {
            (Some(a), Some(b)) if a < b => part[a + 1..b].trim(),
            _ => part
                .rsplit(|c: char| c.is_whitespace() || c == ':')
                .next()
                .unwrap_or(""),
        };
        if addr.contains('@') {
            out.push(addr.to_lowercase());
        }
    }
    out
}

/// The addresses of the message's `From:` header(s).
pub fn from_addresses(msg: &[u8]) -> Vec<String> {
    header_values(msg, "From")
        .iter()
        .flat_map(|v| addresses(v))
        .collect()
}

/// RFC 5322 3.3 date in UTC for `unix` seconds.
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[((m - 1).clamp(0, 11)) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Dot-stuff `msg` and terminate it (RFC 5321 4.5.2); ensures a final CRLF.
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut at_start = true;
    for &b in msg {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
    }

    #[test]
    fn from_header_forms() {
        let m = b"To: x@y\r\nFrom: \"Bob <evil@x>\" <Bob@Example.org>\r\nSubject: s\r\n\r\nFrom: body@x\r\n";
        assert_eq!(from_addresses(m), vec!["bob@example.org"]);
        let m = b"From: a@b.org (comment <c@d>),\r\n c@d.org\r\n\r\n";
        assert_eq!(from_addresses(m), vec!["a@b.org", "c@d.org"]);
        assert!(from_addresses(b"Subject: none\r\n\r\n").is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }
}
