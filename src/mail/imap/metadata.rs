//! METADATA entries (RFC 5464) of the bundled IMAP server: entry-name and
//! value checks, the server's shared entries (what chatmail-metadata serves
//! to Delta Chat), and each account's private entries, kept on disk.
//!
//! Layout: `<data_dir>/mailboxes/<account>/metadata.json` (the account's
//! directory, [`account_dir`], where chatmail keeps its `metadata.json` too,
//! so deleting the account removes it), present while the account has any
//! private entry; replaced atomically (temp file, fsync, rename, directory
//! fsync) under this process's lock, so an `OK` to SETMETADATA survives a
//! restart.
//!
//! `/private/devicetoken` keeps a set of tokens, as chatmail-metadata does
//! (one per device of the account; each SETMETADATA adds one, `NIL` clears
//! them; a token expires 90 days after it was last set; GETMETADATA
//! answers them joined by spaces) on whatever mailbox it is set (Delta Chat
//! uses `INBOX`). Other private entries are one value per mailbox and name.
//!
//! Invariants: entry names are checked (RFC 5464 §3.2) and lower-cased
//! before use; values are UTF-8 text of at most [`MAX_VALUE`] bytes; an
//! account holds at most [`MAX_ENTRIES`] entries and [`MAX_TOKENS`] device
//! tokens, so a file stays under a few hundred KiB. The methods block (file
//! I/O): async callers run them on the blocking pool.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::mail::chatmail::account_flags::account_dir;
use crate::mail::chatmail::ChatmailConfig;
use crate::mail::store::canonical_mailbox;

/// Longest value accepted (RFC 5464 §4.3 `[METADATA MAXSIZE]`); Delta Chat
/// sends device tokens of at most 4096 bytes.
pub const MAX_VALUE: usize = 4096;
/// Private entries per account (device tokens not counted).
pub const MAX_ENTRIES: usize = 64;
/// Device tokens per account (one per device).
pub const MAX_TOKENS: usize = 16;
/// Longest entry name.
pub const MAX_ENTRY_NAME: usize = 256;
/// A device token not set again for this long is dropped (chatmail-metadata).
pub const TOKEN_LIFETIME_SECS: i64 = 90 * 86_400;
/// TURN credentials are valid this long (chatmail-turn: 5 days).
pub const TURN_VALIDITY_SECS: i64 = 5 * 86_400;

/// The device-token entry.
pub const DEVICETOKEN: &str = "/private/devicetoken";

/// The shared server entries served, in this order (Delta Chat asks for
/// them in `update_metadata`, src/imap.rs of its core).
pub const SHARED_ENTRIES: &[&str] = &[
    "/shared/comment",
    "/shared/admin",
    "/shared/vendor/deltachat/irohrelay",
    "/shared/vendor/deltachat/turn",
    "/shared/vendor/deltachat/appversions",
];

/// Why a METADATA request was refused; the variant picks the reply.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The client's syntax (`BAD`).
    #[error("bad entry name {0:?}: {1}")]
    BadName(String, &'static str),
    /// The client's value (`NO`).
    #[error("bad value: {0}")]
    BadValue(&'static str),
    /// `NO [METADATA MAXSIZE n]`.
    #[error("value longer than {MAX_VALUE} bytes")]
    TooLarge,
    /// `NO [METADATA TOOMANY]`.
    #[error("too many entries")]
    TooMany,
    /// `NO [NOPERM]`: shared entries are the server's.
    #[error("shared entries are read-only")]
    ReadOnly,
    /// The server's fault.
    #[error("metadata I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("metadata file is corrupt: {0}")]
    Corrupt(String),
}

/// Check an entry name (RFC 5464 §3.2: slash-separated, starts with
/// `/private` or `/shared`, no `*`, `%`, `//`, trailing `/`, controls or
/// non-ASCII) and return it lower-cased (names are case-insensitive).
pub fn check_entry(name: &str) -> Result<String, MetadataError> {
    let bad = |why| Err(MetadataError::BadName(name.chars().take(64).collect(), why));
    if name.len() > MAX_ENTRY_NAME {
        return bad("too long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'%')
    {
        return bad("only printable ASCII, no * or %");
    }
    if name.contains("//") || name.ends_with('/') {
        return bad("empty component");
    }
    let lower = name.to_ascii_lowercase();
    let top = lower.split('/').nth(1).unwrap_or("");
    if !name.starts_with('/') || (top != "private" && top != "shared") {
        return bad("must start with /private or /shared");
    }
    Ok(lower)
}

/// Check a value to store: UTF-8 text, at most [`MAX_VALUE`] bytes, and
/// for device tokens printable ASCII without spaces (tokens are answered
/// joined by spaces).
pub fn check_value(entry: &str, value: &[u8]) -> Result<String, MetadataError> {
    if value.len() > MAX_VALUE {
        return Err(MetadataError::TooLarge);
    }
    let text = std::str::from_utf8(value).map_err(|_| MetadataError::BadValue("not UTF-8"))?;
    if text.contains('\0') {
        return Err(MetadataError::BadValue("contains NUL"));
    }
    if entry == DEVICETOKEN && (text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(MetadataError::BadValue(
            "a device token is printable ASCII without spaces",
        ));
    }
    Ok(text.to_owned())
}

/// The value of shared server entry `entry` (mailbox `""`), `None` for NIL.
/// Reads the appversions and TURN secret files (blocking).
pub fn shared_value(cfg: Option<&ChatmailConfig>, entry: &str, now: i64) -> Option<String> {
    let cfg = cfg?;
    match entry {
        "/shared/comment" => cfg.metadata_comment.clone(),
        "/shared/admin" => cfg.privacy_mail.as_ref().map(|m| {
            if m.contains(':') {
                m.clone()
            } else {
                format!("mailto:{m}")
            }
        }),
        "/shared/vendor/deltachat/irohrelay" => cfg.iroh_relay.clone(),
        "/shared/vendor/deltachat/turn" => {
            let server = cfg.turn.as_ref()?;
            let secret = match cfg.turn_secret_file.as_ref().map(fs::read) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    tracing::warn!("TURN secret file unreadable: {e}");
                    return None;
                }
                None => return None,
            };
            Some(turn_value(server, trim_secret(&secret), now))
        }
        "/shared/vendor/deltachat/appversions" => {
            let path = cfg.appversions.as_ref()?;
            let parsed = fs::read(path).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            });
            match parsed {
                // One line, as chatmail-metadata answers it.
                Ok(v) => serde_json::to_string(&v).ok(),
                Err(e) => {
                    tracing::warn!(file = %path.display(), "appversions unreadable: {e}");
                    None
                }
            }
        }
        _ => None,
    }
}

fn trim_secret(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

/// `host:port:expiry:password` as Delta Chat parses it
/// (`create_ice_servers_from_metadata` in its core): TURN REST API
/// credentials, username the expiry time, password
/// `base64(HMAC-SHA1(secret, username))` (what coturn's `use-auth-secret`
/// and chatmail-turn check).
pub fn turn_value(server: &str, secret: &[u8], now: i64) -> String {
    let user = (now + TURN_VALIDITY_SECS).to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = ring::hmac::sign(&key, user.as_bytes());
    let pass = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    format!("{server}:{user}:{pass}")
}

/// One account's private entries as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountFile {
    /// Mailbox (canonical; `""` for the server) → entry → value.
    #[serde(default)]
    entries: BTreeMap<String, BTreeMap<String, String>>,
    /// Device token → when it was last set (Unix seconds).
    #[serde(default)]
    devicetokens: BTreeMap<String, i64>,
}

impl AccountFile {
    fn count(&self) -> usize {
        self.entries.values().map(BTreeMap::len).sum()
    }

    fn expire_tokens(&mut self, now: i64) {
        self.devicetokens
            .retain(|_, t| *t > now - TOKEN_LIFETIME_SECS && *t < now + 60);
    }
}

/// The private entries of every account, on disk.
#[derive(Debug)]
pub struct MetadataStore {
    data_dir: PathBuf,
    /// Orders read-modify-write cycles of this process.
    lock: Mutex<()>,
}

/// One change of a SETMETADATA: entry (checked, lower-case), value (`None`
/// removes).
pub type Change = (String, Option<String>);

impl MetadataStore {
    /// Entries in the account directories under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            lock: Mutex::new(()),
        }
    }

    fn file(&self, account: &str) -> Result<PathBuf, MetadataError> {
        account_dir(&self.data_dir, account)
            .map(|d| d.join("metadata.json"))
            .ok_or_else(|| {
                MetadataError::Corrupt(format!("account name {account:?} is no address"))
            })
    }

    fn read(&self, account: &str) -> Result<AccountFile, MetadataError> {
        match fs::read(self.file(account)?) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| MetadataError::Corrupt(e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AccountFile::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn write(&self, account: &str, data: &AccountFile) -> Result<(), MetadataError> {
        let path = self.file(account)?;
        let dir = path.parent().unwrap_or(&self.data_dir).to_owned();
        if data.entries.is_empty() && data.devicetokens.is_empty() {
            return match fs::remove_file(&path) {
                Ok(()) => Ok(File::open(&dir)?.sync_all()?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        fs::create_dir_all(&dir)?;
        let text = serde_json::to_vec(data).map_err(|e| MetadataError::Corrupt(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let mut t = File::create(&tmp)?;
        t.write_all(&text)?;
        t.sync_all()?;
        drop(t);
        fs::rename(&tmp, &path)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    }

    /// Private entry `entry` (checked, lower-case) of `mailbox`.
    pub fn get(
        &self,
        account: &str,
        mailbox: &str,
        entry: &str,
        now: i64,
    ) -> Result<Option<String>, MetadataError> {
        let mut data = self.read(account)?;
        if entry == DEVICETOKEN {
            data.expire_tokens(now);
            if data.devicetokens.is_empty() {
                return Ok(None);
            }
            let tokens: Vec<&str> = data.devicetokens.keys().map(String::as_str).collect();
            return Ok(Some(tokens.join(" ")));
        }
        Ok(data
            .entries
            .get(&canonical_mailbox(mailbox))
            .and_then(|m| m.get(entry))
            .cloned())
    }

    /// Private entries of `mailbox` under `prefix` (`prefix/…`), at most
    /// `depth` levels below it (`None`: any), for GETMETADATA DEPTH.
    pub fn children(
        &self,
        account: &str,
        mailbox: &str,
        prefix: &str,
        depth: Option<usize>,
    ) -> Result<Vec<(String, String)>, MetadataError> {
        let data = self.read(account)?;
        let Some(m) = data.entries.get(&canonical_mailbox(mailbox)) else {
            return Ok(Vec::new());
        };
        let start = format!("{prefix}/");
        Ok(m.iter()
            .filter(|(k, _)| {
                k.strip_prefix(&start)
                    .is_some_and(|rest| depth.is_none_or(|d| rest.split('/').count() <= d))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Apply `changes` to `mailbox` all or nothing.
    pub fn set(
        &self,
        account: &str,
        mailbox: &str,
        changes: &[Change],
        now: i64,
    ) -> Result<(), MetadataError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut data = self.read(account)?;
        data.expire_tokens(now);
        let mailbox = canonical_mailbox(mailbox);
        for (entry, value) in changes {
            if !entry.starts_with("/private/") {
                return Err(MetadataError::ReadOnly);
            }
            if entry == DEVICETOKEN {
                match value {
                    None => data.devicetokens.clear(),
                    Some(t) => {
                        if !data.devicetokens.contains_key(t)
                            && data.devicetokens.len() >= MAX_TOKENS
                        {
                            // The oldest token gives way, as a device replaced.
                            let oldest = data
                                .devicetokens
                                .iter()
                                .min_by_key(|(_, t)| **t)
                                .map(|(k, _)| k.clone());
                            if let Some(o) = oldest {
                                data.devicetokens.remove(&o);
                            }
                        }
                        data.devicetokens.insert(t.clone(), now);
                    }
                }
                continue;
            }
            match value {
                None => {
                    if let Some(m) = data.entries.get_mut(&mailbox) {
                        m.remove(entry);
                        if m.is_empty() {
                            data.entries.remove(&mailbox);
                        }
                    }
                }
                Some(v) => {
                    let exists = data
                        .entries
                        .get(&mailbox)
                        .is_some_and(|m| m.contains_key(entry));
                    if !exists && data.count() >= MAX_ENTRIES {
                        return Err(MetadataError::TooMany);
                    }
                    data.entries
                        .entry(mailbox.clone())
                        .or_default()
                        .insert(entry.clone(), v.clone());
                }
            }
        }
        self.write(account, &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_follow_rfc5464() {
        assert_eq!(
            check_entry("/Private/DeviceToken").unwrap(),
            "/private/devicetoken"
        );
        assert!(check_entry("/shared/vendor/deltachat/irohrelay").is_ok());
        for bad in [
            "private/x",
            "/public/x",
            "/private//x",
            "/private/x/",
            "/private/*",
            "/private/a%b",
            "/private/a b",
            "/private/\u{e9}",
            "/privatex",
        ] {
            assert!(check_entry(bad).is_err(), "{bad:?}");
        }
        assert!(check_entry(&format!("/private/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn values_are_bounded_text() {
        assert!(matches!(
            check_value("/private/comment", &[b'a'; MAX_VALUE + 1]),
            Err(MetadataError::TooLarge)
        ));
        assert!(check_value("/private/comment", b"\xff").is_err());
        assert!(check_value(DEVICETOKEN, b"two words").is_err());
        assert!(check_value(DEVICETOKEN, b"openpgp:abc=").is_ok());
    }

    #[test]
    fn turn_value_is_what_delta_chat_parses() {
        let v = turn_value("turn.example.org:3478", b"north", 1_000_000);
        let parts: Vec<&str> = v.split(':').collect();
        assert_eq!(parts[0], "turn.example.org");
        assert_eq!(parts[1], "3478");
        assert_eq!(parts[2], (1_000_000 + TURN_VALIDITY_SECS).to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north");
        let want = ring::hmac::sign(&key, parts[2].as_bytes());
        assert_eq!(
            parts[3],
            base64::engine::general_purpose::STANDARD.encode(want.as_ref())
        );
    }

    #[test]
    fn tokens_and_entries_persist_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::new(dir.path());
        let now = 1_700_000_000;
        s.set(
            "a@example.org",
            "INBOX",
            &[(DEVICETOKEN.into(), Some("t1".into()))],
            now,
        )
        .unwrap();
        s.set(
            "a@example.org",
            "inbox",
            &[
                (DEVICETOKEN.into(), Some("t2".into())),
                ("/private/comment".into(), Some("hi".into())),
            ],
            now,
        )
        .unwrap();
        let s = MetadataStore::new(dir.path());
        assert_eq!(
            s.get("a@example.org", "", DEVICETOKEN, now)
                .unwrap()
                .as_deref(),
            Some("t1 t2")
        );
        assert_eq!(
            s.get("a@example.org", "INBOX", "/private/comment", now)
                .unwrap()
                .as_deref(),
            Some("hi")
        );
        assert_eq!(s.get("b@example.org", "", DEVICETOKEN, now).unwrap(), None);
        // Expired after 90 days.
        assert_eq!(
            s.get(
                "a@example.org",
                "",
                DEVICETOKEN,
                now + TOKEN_LIFETIME_SECS + 1
            )
            .unwrap(),
            None
        );
        s.set("a@example.org", "INBOX", &[(DEVICETOKEN.into(), None)], now)
            .unwrap();
        assert_eq!(s.get("a@example.org", "", DEVICETOKEN, now).unwrap(), None);
        assert!(matches!(
            s.set(
                "a@example.org",
                "",
                &[("/shared/comment".into(), Some("x".into()))],
                now
            ),
            Err(MetadataError::ReadOnly)
        ));
    }

    #[test]
    fn counts_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::new(dir.path());
        for i in 0..MAX_ENTRIES {
            s.set(
                "a@x.org",
                "",
                &[(format!("/private/e{i}"), Some("v".into()))],
                0,
            )
            .unwrap();
        }
        assert!(matches!(
            s.set(
                "a@x.org",
                "",
                &[("/private/more".into(), Some("v".into()))],
                0
            ),
            Err(MetadataError::TooMany)
        ));
        for i in 0..MAX_TOKENS + 5 {
            s.set(
                "a@x.org",
                "",
                &[(DEVICETOKEN.into(), Some(format!("t{i}")))],
                i as i64,
            )
            .unwrap();
        }
        let tokens = s.get("a@x.org", "", DEVICETOKEN, 100).unwrap().unwrap();
        assert_eq!(tokens.split(' ').count(), MAX_TOKENS);
        assert!(!tokens.split(' ').any(|t| t == "t0"));
    }

    #[test]
    fn files_live_in_the_account_directory() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::new(dir.path());
        let tok = |v: Option<&str>| [(DEVICETOKEN.to_owned(), v.map(str::to_owned))];
        s.set("a@x.org", "", &tok(Some("t")), 0).unwrap();
        let f = dir.path().join("mailboxes/a@x.org/metadata.json");
        assert!(f.exists());
        s.set("a@x.org", "", &tok(None), 0).unwrap();
        assert!(!f.exists(), "no file without entries");
        for bad in ["../x@y", "a/b@c", "noat"] {
            assert!(s.set(bad, "", &tok(Some("t")), 0).is_err(), "{bad}");
        }
    }
}
