//! The `mail.chatmail:` section: raw serde shape, defaults and validation
//! into [`ChatmailConfig`]. `mail: { chatmail: {} }` turns chatmail mode on
//! with every default; each key below overrides one. Key names follow the
//! `chatmail.ini` of chatmail relays where one exists.
//!
//! Invariants of a validated [`ChatmailConfig`]: `1 <= username_min_length
//! <= username_max_length <= 64`; `password_min_length >= 1`; the send
//! limit is at least one message per minute with a burst of at least one;
//! path-route prefixes start with `/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::diagnostics::Reporter;

/// Quota per account when chatmail mode is on and `mail.quota` is not set
/// (chatmail's `max_mailbox_size`).
pub const DEFAULT_CHATMAIL_QUOTA: u64 = 500 << 20;
/// Message lifetime when chatmail mode is on and `mail.delete_after` is not
/// set (chatmail's `delete_mails_after`, 20 days).
pub const DEFAULT_CHATMAIL_DELETE_AFTER: Duration = Duration::from_secs(20 * 86_400);

/// The raw `mail.chatmail:` section as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChatmail {
    #[serde(default)]
    username_min_length: Option<usize>,
    #[serde(default)]
    username_max_length: Option<usize>,
    #[serde(default)]
    password_min_length: Option<usize>,
    #[serde(default)]
    new_accounts: Option<bool>,
    #[serde(default)]
    new_account_rate_per_minute: Option<u32>,
    #[serde(default)]
    max_user_send_per_minute: Option<u32>,
    #[serde(default)]
    max_user_send_burst_size: Option<u32>,
    #[serde(default)]
    delete_inactive_users_after: Option<String>,
    #[serde(default)]
    passthrough_senders: Vec<String>,
    #[serde(default)]
    passthrough_recipients: Vec<String>,
    #[serde(default)]
    iroh_relay: Option<String>,
    #[serde(default)]
    turn: Option<String>,
    #[serde(default)]
    www_dir: Option<PathBuf>,
    #[serde(default)]
    imap_compress: Option<bool>,
    #[serde(default)]
    paths: Vec<RawPathRoute>,
    #[serde(default)]
    privacy_mail: Option<String>,
    #[serde(default)]
    metadata_comment: Option<String>,
    #[serde(default)]
    appversions: Option<PathBuf>,
    #[serde(default)]
    turn_secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathRoute {
    prefix: String,
    backend: String,
}

/// A path on the web route handed to a separate HTTP backend (for example
/// `/relay` to an iroh relay), `Upgrade` passed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRoute {
    /// Requests whose path is this prefix or starts with it followed by `/`
    /// or `?`.
    pub prefix: String,
    /// `host:port` or `unix:/path` of the HTTP backend.
    pub backend: String,
}

/// The validated `mail.chatmail:` section.
#[derive(Debug, Clone)]
pub struct ChatmailConfig {
    /// Shortest local part accepted for a new account (chatmail: 9).
    pub username_min_length: usize,
    /// Longest local part accepted for a new account (chatmail: 9).
    pub username_max_length: usize,
    /// Shortest password accepted for a new account (chatmail: 9).
    pub password_min_length: usize,
    /// `false` is the "no new accounts" switch: existing accounts keep
    /// working, first logins and `/new` are refused.
    pub new_accounts: bool,
    /// `POST /new` answers per client address and minute.
    pub new_account_rate_per_minute: u32,
    /// Messages one account may send per minute (chatmail: 60).
    pub max_user_send_per_minute: u32,
    /// Burst above the per-minute rate (chatmail: 10).
    pub max_user_send_burst_size: u32,
    /// Accounts without a login for this long are deleted (chatmail: 90
    /// days); `None` keeps them.
    pub delete_inactive_users_after: Option<Duration>,
    /// Senders (addresses, or `@domain`) whose mail passes the encryption rule.
    pub passthrough_senders: Vec<String>,
    /// Recipients (addresses, or `@domain`) mail to whom passes the
    /// encryption rule.
    pub passthrough_recipients: Vec<String>,
    /// URL given to clients in METADATA `/shared/vendor/deltachat/irohrelay`.
    pub iroh_relay: Option<String>,
    /// TURN server (`host:port`) given in METADATA
    /// `/shared/vendor/deltachat/turn`, with credentials made from
    /// [`ChatmailConfig::turn_secret_file`].
    pub turn: Option<String>,
    /// Static files served on the web route, if set.
    pub www_dir: Option<PathBuf>,
    /// Offer IMAP `COMPRESS=DEFLATE`.
    pub imap_compress: bool,
    /// Paths on the web route served by separate HTTP backends.
    pub paths: Vec<PathRoute>,
    /// Contact address given in METADATA `/shared/admin` as a `mailto:`
    /// URI (chatmail's `privacy_mail`, Dovecot's `mail_server_admin`).
    pub privacy_mail: Option<String>,
    /// Text given in METADATA `/shared/comment`.
    pub metadata_comment: Option<String>,
    /// JSON file given (compacted) in METADATA
    /// `/shared/vendor/deltachat/appversions`, read at each request as
    /// chatmail-metadata does.
    pub appversions: Option<PathBuf>,
    /// The TURN server's shared secret (TURN REST API: coturn's
    /// `static-auth-secret`, chatmail-turn's secret), read at each request.
    pub turn_secret_file: Option<PathBuf>,
}

impl Default for ChatmailConfig {
    fn default() -> Self {
        Self {
            username_min_length: 9,
            username_max_length: 9,
            password_min_length: 9,
            new_accounts: true,
            new_account_rate_per_minute: 10,
            max_user_send_per_minute: 60,
            max_user_send_burst_size: 10,
            delete_inactive_users_after: Some(Duration::from_secs(90 * 86_400)),
            passthrough_senders: Vec::new(),
            passthrough_recipients: Vec::new(),
            iroh_relay: None,
            turn: None,
            www_dir: None,
            imap_compress: false,
            paths: Vec::new(),
            privacy_mail: None,
            metadata_comment: None,
            appversions: None,
            turn_secret_file: None,
        }
    }
}

impl ChatmailConfig {
    /// May an account be created for `local_part` with `password`? (the
    /// rule doveauth applies on first login: `[a-z0-9._-]`, within the
    /// length bounds; the caller lower-cases the address first, as chatmail's
    /// Dovecot does, and checks the domain).
    pub fn admissible(&self, local_part: &str, password: &str) -> Result<(), Inadmissible> {
        let n = local_part.len();
        if n < self.username_min_length || n > self.username_max_length {
            return Err(Inadmissible::LocalPartLength {
                min: self.username_min_length,
                max: self.username_max_length,
            });
        }
        if !local_part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(Inadmissible::LocalPartChars);
        }
        if password.len() < self.password_min_length {
            return Err(Inadmissible::PasswordTooShort {
                min: self.password_min_length,
            });
        }
        Ok(())
    }
}

/// Why an address/password pair may not create an account (the client's
/// choice is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inadmissible {
    #[error("local part must be {min} to {max} characters long")]
    LocalPartLength { min: usize, max: usize },
    #[error("local part may contain only a-z, 0-9, '.', '_' and '-'")]
    LocalPartChars,
    #[error("password must be at least {min} characters long")]
    PasswordTooShort { min: usize },
}

fn days_or_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    let t = s.trim();
    if let Ok(days) = t.parse::<u64>() {
        return Ok(Duration::from_secs(days.saturating_mul(86_400)));
    }
    humantime::parse_duration(t)
}

/// Validate the raw section; problems go to `r` at `mail.chatmail.*` paths.
pub(crate) fn validate(raw: RawChatmail, base: &Path, r: &mut Reporter) -> ChatmailConfig {
    let d = ChatmailConfig::default();
    let min = raw.username_min_length.unwrap_or(d.username_min_length);
    let max = raw.username_max_length.unwrap_or(d.username_max_length);
    if min == 0 || min > 64 {
        r.at(
            "mail.chatmail.username_min_length",
            "must be between 1 and 64",
        );
    }
    if max < min || max > 64 {
        r.at(
            "mail.chatmail.username_max_length",
            "must be at least username_min_length and at most 64",
        );
    }
    let password_min_length = raw.password_min_length.unwrap_or(d.password_min_length);
    if password_min_length == 0 {
        r.at("mail.chatmail.password_min_length", "must be at least 1");
    }
    let per_minute = raw
        .max_user_send_per_minute
        .unwrap_or(d.max_user_send_per_minute);
    if per_minute == 0 {
        r.at(
            "mail.chatmail.max_user_send_per_minute",
            "must be at least 1",
        );
    }
    let burst = raw
        .max_user_send_burst_size
        .unwrap_or(d.max_user_send_burst_size);
    if burst == 0 {
        r.at(
            "mail.chatmail.max_user_send_burst_size",
            "must be at least 1",
        );
    }
    let new_rate = raw
        .new_account_rate_per_minute
        .unwrap_or(d.new_account_rate_per_minute);
    if new_rate == 0 {
        r.at(
            "mail.chatmail.new_account_rate_per_minute",
            "must be at least 1 (turn new accounts off with new_accounts: false)",
        );
    }
    let delete_inactive_users_after = match raw.delete_inactive_users_after.as_deref() {
        None => d.delete_inactive_users_after,
        Some("never" | "off") => None,
        Some(s) => match days_or_duration(s) {
            Ok(v) if v >= Duration::from_secs(1) => Some(v),
            Ok(_) => {
                r.at(
                    "mail.chatmail.delete_inactive_users_after",
                    "must be at least 1s",
                );
                None
            }
            Err(e) => {
                r.at(
                    "mail.chatmail.delete_inactive_users_after",
                    format!("bad duration {s:?}: {e} (a number of days, 12h, or never)"),
                );
                None
            }
        },
    };
    let mut paths = Vec::new();
    for (i, p) in raw.paths.into_iter().enumerate() {
        if !p.prefix.starts_with('/') {
            r.at(
                &format!("mail.chatmail.paths[{i}].prefix"),
                format!("{:?} must start with /", p.prefix),
            );
        }
        if p.backend.is_empty() {
            r.at(
                &format!("mail.chatmail.paths[{i}].backend"),
                "needs host:port or unix:/path",
            );
        }
        paths.push(PathRoute {
            prefix: p.prefix.trim_end_matches('/').to_owned(),
            backend: p.backend,
        });
    }
    let www_dir = raw
        .www_dir
        .map(|p| if p.is_absolute() { p } else { base.join(p) });
    let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let iroh_relay = raw.iroh_relay.filter(|s| !s.trim().is_empty());
    if let Some(u) = &iroh_relay {
        if !(u.starts_with("https://") || u.starts_with("http://")) || !printable(u) {
            r.at(
                "mail.chatmail.iroh_relay",
                format!("{u:?} must be an http(s) URL without spaces"),
            );
        }
    }
    let turn = raw.turn.filter(|s| !s.trim().is_empty());
    let turn_secret_file = raw.turn_secret_file.map(abs);
    if let Some(t) = &turn {
        let port_ok = t.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty()
                && printable(h)
                && !h.contains(':')
                && p.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            r.at("mail.chatmail.turn", format!("{t:?} must be host:port"));
        }
        match &turn_secret_file {
            None => r.at(
                "mail.chatmail.turn_secret_file",
                "needed with turn: the TURN server's shared secret",
            ),
            Some(f) if std::fs::metadata(f).is_err() => r.at(
                "mail.chatmail.turn_secret_file",
                format!("cannot read {}", f.display()),
            ),
            Some(_) => {}
        }
    }
    let appversions = raw.appversions.map(abs);
    if let Some(f) = &appversions {
        let ok = std::fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some();
        if !ok {
            r.at(
                "mail.chatmail.appversions",
                format!("{} must be a readable JSON file", f.display()),
            );
        }
    }
    for (key, v) in [
        ("privacy_mail", &raw.privacy_mail),
        ("metadata_comment", &raw.metadata_comment),
    ] {
        if v.as_deref()
            .is_some_and(|s| s.len() > 1024 || s.chars().any(char::is_control))
        {
            r.at(
                &format!("mail.chatmail.{key}"),
                "must be one line of at most 1024 bytes",
            );
        }
    }
    ChatmailConfig {
        username_min_length: min,
        username_max_length: max,
        password_min_length,
        new_accounts: raw.new_accounts.unwrap_or(d.new_accounts),
        new_account_rate_per_minute: new_rate,
        max_user_send_per_minute: per_minute,
        max_user_send_burst_size: burst,
        delete_inactive_users_after,
        passthrough_senders: raw
            .passthrough_senders
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        passthrough_recipients: raw
            .passthrough_recipients
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        iroh_relay,
        turn,
        www_dir,
        imap_compress: raw.imap_compress.unwrap_or(d.imap_compress),
        paths,
        privacy_mail: raw.privacy_mail.filter(|s| !s.trim().is_empty()),
        metadata_comment: raw.metadata_comment.filter(|s| !s.is_empty()),
        appversions,
        turn_secret_file,
    }
}

/// Printable ASCII without spaces (what a URL or host may hold here).
fn printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissible_follows_doveauth() {
        let c = ChatmailConfig::default();
        assert_eq!(c.admissible("abcde1234", "123456789"), Ok(()));
        assert!(matches!(
            c.admissible("abc", "123456789"),
            Err(Inadmissible::LocalPartLength { .. })
        ));
        assert_eq!(
            c.admissible("ABCDE1234", "123456789"),
            Err(Inadmissible::LocalPartChars)
        );
        assert_eq!(c.admissible("ab.de_1-4", "123456789"), Ok(()));
        assert_eq!(
            c.admissible("abcd+1234", "123456789"),
            Err(Inadmissible::LocalPartChars)
        );
        assert_eq!(
            c.admissible("abcde1234", "short"),
            Err(Inadmissible::PasswordTooShort { min: 9 })
        );
    }

    fn problems(yaml: &str, base: &Path) -> Vec<String> {
        let raw: RawChatmail = serde_yaml::from_str(yaml).unwrap();
        let map = crate::diagnostics::SourceMap::default();
        let file = base.join("f.yaml");
        let mut r = Reporter::new(&file, &map);
        validate(raw, base, &mut r);
        r.problems.iter().map(|p| p.message.clone()).collect()
    }

    #[test]
    fn metadata_sources_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("secret"), "north").unwrap();
        std::fs::write(d.join("av.json"), "{\"clients\": []}").unwrap();
        std::fs::write(d.join("bad.json"), "{nope").unwrap();
        let ok = "iroh_relay: https://iroh.example.org/\nturn: turn.example.org:3478\nturn_secret_file: secret\nappversions: av.json\nprivacy_mail: p@example.org\n";
        assert_eq!(problems(ok, d), Vec::<String>::new());
        let p = problems("turn: turn.example.org:3478\n", d);
        assert!(p.iter().any(|m| m.contains("shared secret")), "{p:?}");
        let p = problems("turn: turn.example.org\nturn_secret_file: secret\n", d);
        assert!(p.iter().any(|m| m.contains("host:port")), "{p:?}");
        let p = problems("iroh_relay: \"ftp://x y\"\n", d);
        assert!(p.iter().any(|m| m.contains("http(s) URL")), "{p:?}");
        let p = problems("appversions: bad.json\n", d);
        assert!(p.iter().any(|m| m.contains("JSON")), "{p:?}");
        let p = problems("metadata_comment: \"two\\nlines\"\n", d);
        assert!(p.iter().any(|m| m.contains("one line")), "{p:?}");
    }
}
