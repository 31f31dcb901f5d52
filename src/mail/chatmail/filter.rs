//! The chatmail encryption rule: which messages a chatmail relay accepts on
//! submission (outgoing) and for its own accounts (incoming), decided from
//! the envelope and the message bytes alone, with chatmail's filtermail's
//! checks and replies.
//!
//! Outgoing (filtermail `outbound.rs`), in this order:
//! 1. the message must parse (`500 Failed to parse message: …`);
//! 2. the first address of the `From:` header must equal MAIL FROM
//!    (`500 Invalid FROM header: …`, `500 Invalid FROM <from> for <mail-from>`);
//! 3. it passes if it is OpenPGP-encrypted per RFC 3156 ([`is_encrypted`]),
//!    a Secure-Join `vc-request`/`vg-request` ([`is_securejoin`]), from a
//!    passthrough sender, an Autocrypt Setup Message to oneself (Autocrypt
//!    Level 1 §4.4: one recipient equal to MAIL FROM, `Subject: Autocrypt
//!    Setup Message`, `multipart/mixed`), or if every recipient is a
//!    passthrough recipient;
//! 4. otherwise `523 Encryption Needed: Invalid Unencrypted Mail` (RFC 5248
//!    registers 523 for "encryption needed").
//!
//! Incoming (filtermail `inbound.rs`): encrypted (the armor may carry a
//! `Version:` header), Secure-Join requests and cleartext delivery reports
//! from `MAILER-DAEMON@` (`Auto-Submitted:` set, `multipart/report`) pass;
//! other cleartext passes only for recipients that accept it
//! ([`Incoming::Cleartext`], decided by the caller per account).
//!
//! MIME structure is read with `mailparse` (the parser filtermail uses, so
//! both see the same parts) but only two levels deep: the rule looks at the
//! top-level parts and only asks of each whether it is itself multipart, so
//! nesting depth cannot grow the stack or the work. Boundaries longer than
//! [`MAX_BOUNDARY`] are refused as unparsable (RFC 2046 §5.1.1 allows 70).

use mailparse::{MailAddr, MailHeader, MailHeaderMap, ParsedContentType};

use super::openpgp::check_armored;

/// filtermail's reply to cleartext (code and text).
pub const ENCRYPTION_NEEDED: (u16, &str) = (523, "Encryption Needed: Invalid Unencrypted Mail");
/// Longest MIME boundary read (RFC 2046 §5.1.1: at most 70 characters).
pub const MAX_BOUNDARY: usize = 200;
/// Longest client text quoted back in a reply.
const MAX_QUOTED: usize = 200;

/// Why a message is refused: the SMTP reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    /// Reply text (printable ASCII only, client text quoted safely).
    pub text: String,
}

impl Refusal {
    fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn encryption_needed() -> Self {
        Self::new(ENCRYPTION_NEEDED.0, ENCRYPTION_NEEDED.1)
    }
}

/// Why a message passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Encrypted,
    SecureJoin,
    PassthroughSender,
    SetupMessage,
    PassthroughRecipients,
    MailerDaemon,
}

/// The verdict on a message arriving for local accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Passes for every recipient.
    Protected(Pass),
    /// Cleartext: passes only for recipients that accept it, the others get
    /// [`ENCRYPTION_NEEDED`].
    Cleartext,
}

/// Passthrough addresses: an entry is an address, or `@domain` for every
/// address of that domain (not its subdomains). Compared without case.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough<'a> {
    pub senders: &'a [String],
    pub recipients: &'a [String],
}

/// Does `addr` match one of `list` (an address, or an `@domain` suffix)?
pub fn matches_passthrough(addr: &str, list: &[String]) -> bool {
    let addr = addr.to_ascii_lowercase();
    list.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        addr == p || (p.starts_with('@') && addr.ends_with(&p))
    })
}

/// One MIME entity as the rule sees it.
#[derive(Debug)]
pub struct Part<'a> {
    raw: &'a [u8],
    headers: Vec<MailHeader<'a>>,
    ctype: ParsedContentType,
    /// Filled for the top level only.
    subparts: Vec<Part<'a>>,
    /// Has at least one subpart (known at every level).
    multipart: bool,
}

impl Part<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get_first_value(name)
    }

    /// The decoded body (transfer encoding and charset), for a part that is
    /// not multipart.
    fn body(&self) -> Option<String> {
        if self.multipart {
            return None;
        }
        // Not multipart, so mailparse does not descend.
        mailparse::parse_mail(self.raw).ok()?.get_body().ok()
    }
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `needle` at the start of a line, searching from `from` (mailparse's rule:
/// at `from` itself or right after a `\n`).
fn find_line_start(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let mut start = from;
    while let Some(i) = find(hay, start, needle) {
        if i == from || hay.get(i.wrapping_sub(1)) == Some(&b'\n') {
            return Some(i);
        }
        start = i + 1;
    }
    None
}

/// The CRLF or LF just before a boundary belongs to the boundary.
fn strip_line_end(hay: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && hay.get(end - 1) == Some(&b'\n') {
        end -= 1;
        if end > start && hay.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
    }
    end
}

/// Parse `raw` into the two-level view, splitting parts exactly where
/// mailparse 0.16 does.
pub fn parse(raw: &[u8]) -> Result<Part<'_>, String> {
    parse_part(raw, false, true)
}

fn parse_part(raw: &[u8], in_digest: bool, top: bool) -> Result<Part<'_>, String> {
    let (headers, body_at) = mailparse::parse_headers(raw).map_err(|e| e.to_string())?;
    let ctype = match headers.get_first_value("Content-Type") {
        Some(v) => mailparse::parse_content_type(&v),
        None => {
            let mut d = ParsedContentType::default();
            if in_digest {
                d.mimetype = "message/rfc822".into();
            }
            d
        }
    };
    let mut part = Part {
        raw,
        headers,
        ctype,
        subparts: Vec::new(),
        multipart: false,
    };
    let boundary = match part.ctype.params.get("boundary") {
        Some(b) if part.ctype.mimetype.starts_with("multipart/") && raw.len() > body_at => {
            if b.len() > MAX_BOUNDARY {
                return Err(format!("MIME boundary longer than {MAX_BOUNDARY}"));
            }
            format!("--{b}").into_bytes()
        }
        _ => return Ok(part),
    };
    let digest = part.ctype.mimetype == "multipart/digest";
    let Some(first) = find_line_start(raw, body_at, &boundary) else {
        return Ok(part);
    };
    let mut after = first + boundary.len();
    while let Some(start) = find(raw, after, b"\n").map(|i| i + 1) {
        part.multipart = true;
        if !top {
            break;
        }
        let next = find_line_start(raw, start, &boundary);
        let end = next.map_or(raw.len(), |n| strip_line_end(raw, start, n));
        let sub = raw.get(start..end).unwrap_or_default();
        part.subparts.push(parse_part(sub, digest, false)?);
        after = next.map_or(raw.len(), |n| n + boundary.len());
        if after + 2 > raw.len() || raw.get(after..after + 2) == Some(b"--") {
            break;
        }
    }
    Ok(part)
}

/// RFC 3156 §4: `multipart/encrypted` with exactly an
/// `application/pgp-encrypted` part whose body is `Version: 1` and an
/// `application/octet-stream` part holding an armored OpenPGP message that
/// passes [`check_armored`]. (filtermail also passes a message that has the
/// first part only; RFC 3156 asks for both, and so does this check.)
pub fn is_encrypted(m: &Part, outgoing: bool) -> bool {
    if m.subparts.is_empty()
        || !m.ctype.mimetype.eq_ignore_ascii_case("multipart/encrypted")
        || m.subparts.len() != 2
    {
        return false;
    }
    for (i, p) in m.subparts.iter().enumerate() {
        if p.multipart {
            return false;
        }
        let ok = if i == 0 {
            p.ctype
                .mimetype
                .eq_ignore_ascii_case("application/pgp-encrypted")
                && p.body().is_some_and(|b| b.trim() == "Version: 1")
        } else {
            p.ctype.mimetype == "application/octet-stream"
                && p.body().is_some_and(|b| check_armored(&b, outgoing))
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A Secure-Join request as Delta Chat sends it before keys are known: the
/// `Secure-Join: vc-request` or `vg-request` header and exactly one
/// `text/plain` part whose whole body is that header line.
pub fn is_securejoin(m: &Part) -> bool {
    let Some(kind) = m.header("Secure-Join") else {
        return false;
    };
    if kind != "vc-request" && kind != "vg-request" {
        return false;
    }
    let [p] = m.subparts.as_slice() else {
        return false;
    };
    if p.multipart || p.ctype.mimetype != "text/plain" {
        return false;
    }
    p.body().is_some_and(|b| {
        let b = b.trim().to_lowercase();
        b == "secure-join: vc-request" || b == "secure-join: vg-request"
    })
}

/// The first address of a header value, lower-cased (filtermail's
/// `extract_address`).
fn first_address(value: &str) -> Option<String> {
    let lower = value.to_lowercase();
    let cut = match lower.find('>') {
        Some(i) => &lower[..=i],
        None => lower.as_str(),
    };
    match mailparse::addrparse(cut).ok()?.iter().next()? {
        MailAddr::Single(s) => Some(s.addr.clone()),
        MailAddr::Group(g) => g.addrs.first().map(|s| s.addr.clone()),
    }
}

/// Client text made safe to quote in a reply: printable ASCII, bounded.
fn quote(s: &str) -> String {
    s.chars()
        .take(MAX_QUOTED)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The outgoing rule for a submission from `mail_from` to `rcpts`.
pub fn check_outgoing(
    pass: Passthrough<'_>,
    mail_from: &str,
    rcpts: &[String],
    msg: &[u8],
) -> Result<Pass, Refusal> {
    let m = parse(msg)
        .map_err(|e| Refusal::new(500, format!("Failed to parse message: {}", quote(&e))))?;
    let from_header = m.header("From").unwrap_or_default().trim().to_owned();
    let Some(from) = first_address(&from_header) else {
        return Err(Refusal::new(
            500,
            format!("Invalid FROM header: {}", quote(&from_header)),
        ));
    };
    if !mail_from.eq_ignore_ascii_case(&from) {
        return Err(Refusal::new(
            500,
            format!("Invalid FROM <{}> for <{}>", quote(&from), quote(mail_from)),
        ));
    }
    if is_encrypted(&m, true) {
        return Ok(Pass::Encrypted);
    }
    if is_securejoin(&m) {
        return Ok(Pass::SecureJoin);
    }
    if matches_passthrough(mail_from, pass.senders) {
        return Ok(Pass::PassthroughSender);
    }
    if let [to] = rcpts {
        if to.eq_ignore_ascii_case(mail_from)
            && m.header("Subject").unwrap_or_default() == "Autocrypt Setup Message"
            && m.ctype.mimetype == "multipart/mixed"
        {
            return Ok(Pass::SetupMessage);
        }
    }
    if rcpts
        .iter()
        .all(|r| matches_passthrough(r, pass.recipients))
    {
        return Ok(Pass::PassthroughRecipients);
    }
    Err(Refusal::encryption_needed())
}

/// The incoming rule: the verdict common to all recipients. The caller
/// refuses [`Incoming::Cleartext`] with [`ENCRYPTION_NEEDED`] for each
/// recipient that does not accept cleartext.
pub fn check_incoming(msg: &[u8]) -> Result<Incoming, Refusal> {
    let m = parse(msg)
        .map_err(|e| Refusal::new(500, format!("Failed to parse message: {}", quote(&e))))?;
    if is_encrypted(&m, false) {
        return Ok(Incoming::Protected(Pass::Encrypted));
    }
    if is_securejoin(&m) {
        return Ok(Incoming::Protected(Pass::SecureJoin));
    }
    if m.header("Auto-Submitted").is_some_and(|v| !v.is_empty()) {
        let from = first_address(m.header("From").unwrap_or_default().trim());
        if from.is_some_and(|f| f.starts_with("mailer-daemon@"))
            && m.ctype.mimetype == "multipart/report"
        {
            return Ok(Incoming::Protected(Pass::MailerDaemon));
        }
    }
    Ok(Incoming::Cleartext)
}

/// The reply for a recipient that does not accept cleartext.
pub fn encryption_needed() -> Refusal {
    Refusal::encryption_needed()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARMOR: &str = include_str!("../../../tests/data/chatmail/encrypted-newformat.asc");
    const ARMOR_GPG: &str = include_str!("../../../tests/data/chatmail/encrypted-gpg.asc");

    fn crlf(s: &str) -> Vec<u8> {
        s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
    }

    /// A PGP/MIME message as Delta Chat sends it.
    fn encrypted(from: &str, armor: &str) -> Vec<u8> {
        crlf(&format!(
            "From: {from}\nTo: <bob@example.org>\nSubject: [...]\n\
             Message-ID: <m1@example.org>\nChat-Version: 1.0\nMIME-Version: 1.0\n\
             Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n\
             \tboundary=\"XyZ\"\n\n\n--XyZ\nContent-Description: PGP/MIME version identification\n\
             Content-Type: application/pgp-encrypted\n\nVersion: 1\n\n\n--XyZ\n\
             Content-Description: OpenPGP encrypted message\n\
             Content-Disposition: inline; filename=\"encrypted.asc\";\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\n\n{armor}\n\n--XyZ--\n"
        ))
    }

    fn securejoin(body: &str, header: &str) -> Vec<u8> {
        crlf(&format!(
            "Subject: Message from alice@example.org\nFrom: <alice@example.org>\n\
             To: <bob@example.org>\nChat-Version: 1.0\nSecure-Join: {header}\n\
             Secure-Join-Invitenumber: RANDOM-TOKEN\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"Gl9\"\n\n\n--Gl9\n\
             Content-Type: text/plain; charset=utf-8\n\n{body}\n\n\n--Gl9--\n"
        ))
    }

    fn plain(from: &str, subject: &str) -> Vec<u8> {
        crlf(&format!(
            "From: {from}\nTo: bob@example.org\nSubject: {subject}\n\nhello\n"
        ))
    }

    const ALICE: &str = "alice@example.org";

    fn rcpts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn out(msg: &[u8], to: &[&str]) -> Result<Pass, Refusal> {
        check_outgoing(Passthrough::default(), ALICE, &rcpts(to), msg)
    }

    #[test]
    fn encrypted_passes_cleartext_gets_523() {
        let bob = ["bob@example.org"];
        assert_eq!(out(&encrypted(ALICE, ARMOR), &bob), Ok(Pass::Encrypted));
        let no = out(&plain(ALICE, "hi"), &bob).unwrap_err();
        assert_eq!(
            (no.code, no.text.as_str()),
            (523, "Encryption Needed: Invalid Unencrypted Mail")
        );
        // GnuPG's old-format packet header is refused as filtermail does.
        assert_eq!(
            out(&encrypted(ALICE, ARMOR_GPG), &bob).unwrap_err().code,
            523
        );
        // The armor as plain text in a text/plain body is not encryption.
        let fake = crlf(&format!(
            "From: {ALICE}\nContent-Type: text/plain\n\n{ARMOR}"
        ));
        assert_eq!(out(&fake, &bob).unwrap_err().code, 523);
    }

    #[test]
    fn structure_variants() {
        let bob = ["bob@example.org"];
        let good = String::from_utf8(encrypted(ALICE, ARMOR)).unwrap();
        // A third part.
        let three = good.replace(
            "--XyZ--",
            "--XyZ\r\nContent-Type: text/plain\r\n\r\nleak\r\n--XyZ--",
        );
        assert_eq!(out(three.as_bytes(), &bob).unwrap_err().code, 523);
        // The version part alone.
        let one = good.replacen(
            "\r\n--XyZ\r\nContent-Description: OpenPGP",
            "\r\n--XyZ--\r\nContent-Description: OpenPGP",
            1,
        );
        assert_eq!(out(one.as_bytes(), &bob).unwrap_err().code, 523);
        // Wrong version body, wrong second type.
        let v2 = good.replace("\r\nVersion: 1\r\n", "\r\nVersion: 2\r\n");
        assert_eq!(out(v2.as_bytes(), &bob).unwrap_err().code, 523);
        let ty = good.replace("application/octet-stream", "text/plain");
        assert_eq!(out(ty.as_bytes(), &bob).unwrap_err().code, 523);
        // A nested multipart as first part.
        let nested = good.replacen(
            "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1",
            "Content-Type: multipart/mixed; boundary=\"in\"\r\n\r\n--in\r\n\r\nVersion: 1\r\n--in--",
            1,
        );
        assert_eq!(out(nested.as_bytes(), &bob).unwrap_err().code, 523);
        // A Version armor header: refused outgoing, accepted incoming.
        let ver = good.replace(
            "-----BEGIN PGP MESSAGE-----\r\n\r\n",
            "-----BEGIN PGP MESSAGE-----\r\nVersion: x\r\n\r\n",
        );
        assert_eq!(out(ver.as_bytes(), &bob).unwrap_err().code, 523);
        assert_eq!(
            check_incoming(ver.as_bytes()),
            Ok(Incoming::Protected(Pass::Encrypted))
        );
        // Base64 transfer encoding of the parts is decoded first.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(ARMOR.replace('\n', "\r\n"));
        let enc = good.replace(
            "name=\"encrypted.asc\"\r\n\r\n",
            "name=\"encrypted.asc\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        let start = enc.find("-----BEGIN").unwrap();
        let end = enc.find("-----END PGP MESSAGE-----").unwrap() + 25;
        let enc = format!("{}{}{}", &enc[..start], b64, &enc[end..]);
        assert_eq!(out(enc.as_bytes(), &bob), Ok(Pass::Encrypted));
    }

    #[test]
    fn securejoin_shapes() {
        let bob = ["bob@example.org"];
        for h in ["vc-request", "vg-request"] {
            let m = securejoin(&format!("Secure-Join: {h}"), h);
            assert_eq!(out(&m, &bob), Ok(Pass::SecureJoin), "{h}");
            assert_eq!(
                check_incoming(&m),
                Ok(Incoming::Protected(Pass::SecureJoin))
            );
        }
        // filtermail's securejoin-vc-fake: the header but another body.
        let fake = securejoin("Meow!", "vc-request");
        assert_eq!(out(&fake, &bob).unwrap_err().code, 523);
        assert_eq!(check_incoming(&fake), Ok(Incoming::Cleartext));
        // Later steps (vc-request-with-auth…) travel encrypted.
        let later = securejoin("Secure-Join: vc-request", "vc-request-with-auth");
        assert_eq!(out(&later, &bob).unwrap_err().code, 523);
        // Two parts.
        let two = String::from_utf8(securejoin("Secure-Join: vc-request", "vc-request"))
            .unwrap()
            .replace(
                "--Gl9--",
                "--Gl9\r\nContent-Type: text/plain\r\n\r\nx\r\n--Gl9--",
            );
        assert_eq!(out(two.as_bytes(), &bob).unwrap_err().code, 523);
        // Not multipart at all.
        let flat =
            crlf("From: <alice@example.org>\nSecure-Join: vc-request\n\nSecure-Join: vc-request\n");
        assert_eq!(out(&flat, &bob).unwrap_err().code, 523);
    }

    #[test]
    fn from_must_equal_mail_from() {
        let bob = ["bob@example.org"];
        let m = encrypted("Mallory <mallory@example.org>", ARMOR);
        let e = out(&m, &bob).unwrap_err();
        assert_eq!(
            (e.code, e.text.as_str()),
            (
                500,
                "Invalid FROM <mallory@example.org> for <alice@example.org>"
            )
        );
        // Display names and case do not matter.
        let m = encrypted("\"Alice A.\" <Alice@Example.org>", ARMOR);
        assert_eq!(out(&m, &bob), Ok(Pass::Encrypted));
        // No From header at all.
        let e = out(&crlf("Subject: x\n\nbody\n"), &bob).unwrap_err();
        assert_eq!((e.code, e.text.as_str()), (500, "Invalid FROM header: "));
        // Client text in the reply cannot inject lines.
        let m = crlf("From: <evil@x.org\u{7}>\n\nx\n");
        let e = out(&m, &bob).unwrap_err();
        assert!(
            e.text.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{e:?}"
        );
    }

    #[test]
    fn passthrough_and_setup_message() {
        let senders = rcpts(&["alice@example.org"]);
        let recipients = rcpts(&["pass@example.net", "@example.com"]);
        let p = Passthrough {
            senders: &senders,
            recipients: &recipients,
        };
        let msg = plain(ALICE, "hi");
        assert_eq!(
            check_outgoing(p, ALICE, &rcpts(&["x@y.org"]), &msg),
            Ok(Pass::PassthroughSender)
        );
        let p = Passthrough {
            senders: &[],
            recipients: &recipients,
        };
        let to = rcpts(&["pass@example.net", "anyone@example.com"]);
        assert_eq!(
            check_outgoing(p, ALICE, &to, &msg),
            Ok(Pass::PassthroughRecipients)
        );
        // One recipient outside the list spoils it; subdomains do not match.
        let to = rcpts(&["pass@example.net", "x@sub.example.com"]);
        assert_eq!(check_outgoing(p, ALICE, &to, &msg).unwrap_err().code, 523);
        // Autocrypt Setup Message: to oneself only.
        let asm = crlf(
            "From: alice@example.org\nTo: alice@example.org\nAutocrypt-Setup-Message: v1\n\
             Subject: Autocrypt Setup Message\n\
             Content-type: multipart/mixed; boundary=\"Y6f\"\n\n--Y6f\nContent-Type: text/plain\n\n\
             This message contains all information...\n--Y6f\n\
             Content-Type: application/autocrypt-setup\n\n<html>key</html>\n--Y6f--\n",
        );
        assert_eq!(out(&asm, &[ALICE]), Ok(Pass::SetupMessage));
        assert_eq!(out(&asm, &["bob@example.org"]).unwrap_err().code, 523);
        assert_eq!(
            out(&asm, &[ALICE, "bob@example.org"]).unwrap_err().code,
            523
        );
    }

    #[test]
    fn incoming_reports_and_cleartext() {
        let report = crlf(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@example.org>\n\
             Subject: Returned mail\nTo: <a@b.org>\nAuto-Submitted: auto-replied\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"R\"\n\n\
             --R\nContent-Type: text/plain\n\nfailed\n--R\nContent-Type: message/delivery-status\n\n\
             Action: failed\n--R--\n",
        );
        assert_eq!(
            check_incoming(&report),
            Ok(Incoming::Protected(Pass::MailerDaemon))
        );
        let s = String::from_utf8(report).unwrap();
        let no_auto = s.replace("Auto-Submitted: auto-replied\r\n", "");
        assert_eq!(check_incoming(no_auto.as_bytes()), Ok(Incoming::Cleartext));
        let other = s.replace("MAILER-DAEMON@", "postmaster@");
        assert_eq!(check_incoming(other.as_bytes()), Ok(Incoming::Cleartext));
        assert_eq!(
            check_incoming(&plain("x@y.org", "hi")),
            Ok(Incoming::Cleartext)
        );
        assert_eq!(
            check_incoming(&encrypted("x@y.org", ARMOR)),
            Ok(Incoming::Protected(Pass::Encrypted))
        );
    }

    #[test]
    fn deep_nesting_is_cheap() {
        // 20 000 nested multiparts: two levels are read, the rest skipped.
        let mut m = String::from("From: alice@example.org\r\n");
        for i in 0..20_000 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        m.push_str("\r\nx\r\n");
        assert_eq!(
            out(m.as_bytes(), &["bob@example.org"]).unwrap_err().code,
            523
        );
        let long = format!(
            "From: alice@example.org\r\nContent-Type: multipart/mixed; boundary=\"{}\"\r\n\r\nx\r\n",
            "b".repeat(MAX_BOUNDARY + 1)
        );
        assert_eq!(
            out(long.as_bytes(), &["bob@example.org"]).unwrap_err().code,
            500
        );
    }

    #[test]
    fn split_matches_mailparse() {
        // Where both parse, the top-level parts are the ones mailparse finds.
        for msg in [
            encrypted(ALICE, ARMOR),
            securejoin("Secure-Join: vc-request", "vc-request"),
            plain(ALICE, "x"),
            crlf("Content-Type: multipart/mixed; boundary=a\n\n--a\n\none\n--a\n\ntwo\n--a--\n"),
            crlf("Content-Type: multipart/mixed; boundary=a\n\npre\n--a\n\nno end\n"),
            crlf("Content-Type: multipart/digest; boundary=a\n\n--a\n\nSubject: x\n--a--\n"),
        ] {
            let ours = parse(&msg).unwrap();
            let theirs = mailparse::parse_mail(&msg).unwrap();
            assert_eq!(ours.subparts.len(), theirs.subparts.len());
            for (a, b) in ours.subparts.iter().zip(&theirs.subparts) {
                assert_eq!(a.ctype.mimetype, b.ctype.mimetype);
                assert_eq!(a.raw, b.raw_bytes);
                assert_eq!(a.multipart, !b.subparts.is_empty());
                assert_eq!(a.body(), b.get_body().ok());
            }
        }
    }
}
