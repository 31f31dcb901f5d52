//! Mail accounts: name = primary address, argon2id password hashes.
//!
//! Stored in `<data_dir>/accounts.json`, replaced atomically (temp file,
//! fsync, rename, fsync directory) under an exclusive lock on
//! `<data_dir>/accounts.lock`, so the CLI can edit accounts while the servers
//! run; the servers re-read the file on each lookup and never cache a
//! password. Addresses are lower-cased and must be in a local domain.
//! Password checks cost an argon2 computation (tens of milliseconds) and
//! its working memory (19 MiB with the default parameters): the servers run
//! them through `mail::login` (throttled, queued, on a small pool whose
//! threads each reuse one buffer) and pass that buffer in
//! ([`Accounts::authenticate_with`]).
//!
//! Chatmail mode ([`Accounts::with_chatmail`]) adds, as chatmail's doveauth
//! and lastlogin do:
//! - creation on first login only for an admissible local part and password
//!   ([`ChatmailConfig::admissible`]) while `new_accounts` is on; a refused
//!   creation is logged and answered like a wrong password;
//! - last-login tracking: the modification time of
//!   `<data_dir>/lastlogin/<sha256 of the account>` is the start of the
//!   period (a day, shorter for short `delete_inactive_users_after`) of the
//!   last successful password login, so a login costs a `stat` and at most
//!   one write per account and period, and the file tells no more than the
//!   period;
//! - deletion of accounts without a login (nor creation) for
//!   `delete_inactive_users_after` ([`Accounts::inactive`],
//!   [`Accounts::mark_deleting`], [`Accounts::finish_delete`], driven by
//!   `mail::inactive_loop`). A record is first marked `deleting` (it then
//!   neither logs in, nor receives mail, nor can be created again), then its
//!   mail is dropped from the store, then the record, its last-login file and
//!   its directory of switches (`mailboxes/<account>/`) go; a crash between
//!   the steps leaves the mark, and the next pass finishes the deletion.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::log_safe::Escaped;
use crate::mail::chatmail::config::Inadmissible;
use crate::mail::chatmail::ChatmailConfig;
use crate::mail::config::MailConfig;

/// Shortest password accepted for account creation on first login outside
/// chatmail mode (chatmail mode uses `password_min_length`).
pub const AUTO_CREATE_MIN_PASSWORD: usize = 9;
/// Directory (inside the data directory) of the last-login files.
pub const LASTLOGIN_DIR: &str = "lastlogin";
/// Longest last-login period: a day, as chatmail's lastlogin keeps it.
const MAX_LOGIN_PERIOD: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("accounts file I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("accounts file is corrupt: {0}")]
    Corrupt(String),
    #[error("{0:?} is not a valid mail address")]
    BadAddress(String),
    #[error("{addr:?} is not in a local domain (local domains: {domains})")]
    NotLocal { addr: String, domains: String },
    #[error("account {0:?} already exists")]
    Exists(String),
    #[error("no account {0:?}")]
    NoSuch(String),
    #[error("password must not be empty")]
    EmptyPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// One account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRecord {
    /// argon2id PHC string.
    pub password: String,
    /// Further addresses of the account (all in local domains).
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub created: i64,
    /// Being deleted (see the module comment): no login, no mail, no
    /// re-creation until the deletion is finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccountsFile {
    #[serde(default)]
    accounts: BTreeMap<String, AccountRecord>,
}

/// Handle on the accounts file of one data directory.
#[derive(Debug, Clone)]
pub struct Accounts {
    dir: PathBuf,
    domains: Vec<String>,
    auto_create: bool,
    chatmail: Option<Arc<ChatmailConfig>>,
}

/// Why a first login did not create an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateRefused {
    #[error("account creation on first login is off")]
    Off,
    #[error("not an address in a local domain")]
    NotLocal,
    #[error("new accounts are switched off (mail.chatmail.new_accounts: false)")]
    NewAccountsOff,
    #[error("password must be at least {0} characters long")]
    PasswordTooShort(usize),
    #[error(transparent)]
    Inadmissible(#[from] Inadmissible),
}

/// Split and check `addr` (`local@domain`, no spaces, no brackets); lower-cased.
pub fn normalize_address(addr: &str) -> Option<String> {
    let a = addr.trim().to_lowercase();
    let (local, domain) = a.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = crate::mail::config::valid_domain(domain);
    (local_ok && domain_ok).then_some(a)
}

/// The domain part of an address.
pub fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// A fresh random password (20 characters, about 119 bits).
pub fn generate_password() -> Result<String, AccountError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw).map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// argon2 working memory, reused from one check to the next by its owner.
/// Allocating and freeing 19 MiB per login makes glibc raise its mmap
/// threshold, after which every thread's arena keeps its own freed copy (a
/// few dozen logins grew a server by more than 300 MiB): so each thread of
/// the check pool keeps one buffer for its life.
pub type Argon2Memory = Vec<argon2::Block>;

fn verify_password(phc: &str, password: &str, memory: &mut Argon2Memory) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    memory.resize(params.block_count(), argon2::Block::default());
    argon2::password_hash::Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    // `Output` compares in constant time.
    .is_ok_and(|computed| computed == expected)
}

impl Accounts {
    pub fn new(data_dir: &Path, domains: &[String], auto_create: bool) -> Self {
        Self {
            dir: data_dir.to_owned(),
            domains: domains.to_vec(),
            auto_create,
            chatmail: None,
        }
    }

    /// The accounts of a `mail:` section, with its chatmail rules when on.
    pub fn from_config(mail: &MailConfig) -> Self {
        Self::new(&mail.data_dir, &mail.domains, mail.auto_create)
            .with_chatmail(mail.chatmail.clone())
    }

    /// Apply chatmail's account rules (see the module comment).
    pub fn with_chatmail(mut self, chatmail: Option<ChatmailConfig>) -> Self {
        self.chatmail = chatmail.map(Arc::new);
        self
    }

    /// May a first login as `user` with `password` create its account?
    /// Returns the normalised address.
    pub fn may_create(&self, user: &str, password: &str) -> Result<String, CreateRefused> {
        if !self.auto_create {
            return Err(CreateRefused::Off);
        }
        let addr = self
            .check_address(user)
            .map_err(|_| CreateRefused::NotLocal)?;
        match &self.chatmail {
            None => {
                if password.chars().count() < AUTO_CREATE_MIN_PASSWORD {
                    return Err(CreateRefused::PasswordTooShort(AUTO_CREATE_MIN_PASSWORD));
                }
            }
            Some(c) => {
                if !c.new_accounts {
                    return Err(CreateRefused::NewAccountsOff);
                }
                let local = addr.rsplit_once('@').map_or("", |(l, _)| l);
                c.admissible(local, password)?;
            }
        }
        Ok(addr)
    }

    /// Length of one last-login period: a day, or an eighth of
    /// `delete_inactive_users_after` when that is shorter (at least 1s).
    pub fn login_period(&self) -> Duration {
        let secs = self
            .chatmail
            .as_ref()
            .and_then(|c| c.delete_inactive_users_after)
            .map_or(MAX_LOGIN_PERIOD, |d| {
                (d.as_secs() / 8).clamp(1, MAX_LOGIN_PERIOD)
            });
        Duration::from_secs(secs)
    }

    fn lastlogin_path(&self, account: &str) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(account.as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(LASTLOGIN_DIR).join(name)
    }

    /// Note a successful login of `account` (chatmail mode only): at most
    /// one write per account and [`Accounts::login_period`].
    pub fn record_login(&self, account: &str) -> io::Result<()> {
        if self.chatmail.is_none() {
            return Ok(());
        }
        let period = self.login_period().as_secs();
        let now = u64::try_from(crate::mail::store::unix_now()).unwrap_or(0);
        let start = now / period * period;
        let path = self.lastlogin_path(account);
        let current = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        if current == Some(start) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        f.set_modified(UNIX_EPOCH + Duration::from_secs(start))
    }

    /// The last login of `account` (seconds since the epoch), or its
    /// creation when later or when it never logged in.
    fn last_activity(&self, account: &str, record: &AccountRecord) -> i64 {
        let login = fs::metadata(self.lastlogin_path(account))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        login.max(record.created)
    }

    /// Accounts to delete for inactivity: first those marked `deleting` (an
    /// interrupted deletion), then those whose last activity is before
    /// `cutoff`, at most `max` in all. Scans at most `scan` accounts,
    /// starting after `cursor` and wrapping around; `cursor` is moved on so
    /// that consecutive calls cover every account.
    pub fn inactive(
        &self,
        cutoff: i64,
        cursor: &mut Option<String>,
        scan: usize,
        max: usize,
    ) -> Result<Vec<String>, AccountError> {
        let f = self.read()?;
        let mut out: Vec<String> = f
            .accounts
            .iter()
            .filter(|(_, r)| r.deleting)
            .map(|(k, _)| k.clone())
            .take(max)
            .collect();
        let start = cursor.clone();
        let after = f
            .accounts
            .iter()
            .filter(|(k, _)| start.as_ref().is_none_or(|c| k.as_str() > c.as_str()));
        let before = f
            .accounts
            .iter()
            .filter(|(k, _)| start.as_ref().is_some_and(|c| k.as_str() <= c.as_str()));
        let mut last = None;
        for (k, r) in after.chain(before).take(scan) {
            if out.len() >= max {
                break;
            }
            last = Some(k.clone());
            if !r.deleting && self.last_activity(k, r) < cutoff {
                out.push(k.clone());
            }
        }
        *cursor = last;
        Ok(out)
    }

    /// Mark those of `accounts` that are still inactive at `cutoff` (or
    /// already marked) as `deleting`, in one write; returns them.
    pub fn mark_deleting(
        &self,
        accounts: &[String],
        cutoff: i64,
    ) -> Result<Vec<String>, AccountError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        // Decided before the lock: reading the last-login files needs no lock,
        // and a login between this check and the write is the race any
        // deletion at the deadline has (that login came after the whole
        // inactivity period).
        let snapshot = self.read()?;
        let due: Vec<String> = accounts
            .iter()
            .filter(|a| {
                snapshot
                    .accounts
                    .get(*a)
                    .is_some_and(|r| r.deleting || self.last_activity(a, r) < cutoff)
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(due);
        }
        self.edit(|f| {
            let mut marked = Vec::new();
            for a in &due {
                if let Some(r) = f.accounts.get_mut(a) {
                    r.deleting = true;
                    marked.push(a.clone());
                }
            }
            Ok(marked)
        })
    }

    /// Remove the records (still marked `deleting`) and last-login files of
    /// `accounts`, whose mail is gone, in one write.
    pub fn finish_delete(&self, accounts: &[String]) -> Result<(), AccountError> {
        if accounts.is_empty() {
            return Ok(());
        }
        self.edit(|f| {
            for a in accounts {
                if f.accounts.get(a).is_some_and(|r| r.deleting) {
                    f.accounts.remove(a);
                }
            }
            Ok(())
        })?;
        for a in accounts {
            match fs::remove_file(self.lastlogin_path(a)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            // Its per-account switches (`allowCleartextIncoming`): a later
            // account of the same name starts with the defaults.
            if let Some(d) = crate::mail::chatmail::account_flags::account_dir(&self.dir, a) {
                match fs::remove_dir_all(d) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn file(&self) -> PathBuf {
        self.dir.join("accounts.json")
    }

    fn read(&self) -> Result<AccountsFile, AccountError> {
        match fs::read(self.file()) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| AccountError::Corrupt(format!("{}: {e}", self.file().display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Read-modify-write under the accounts lock, replacing the file atomically.
    fn edit<T>(
        &self,
        f: impl FnOnce(&mut AccountsFile) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        fs::create_dir_all(&self.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("accounts.lock"))?;
        lock.lock()?;
        let mut data = self.read()?;
        let out = f(&mut data)?;
        let text =
            serde_json::to_vec_pretty(&data).map_err(|e| AccountError::Corrupt(e.to_string()))?;
        let tmp = self.dir.join("accounts.json.tmp");
        let mut t = File::create(&tmp)?;
        t.write_all(&text)?;
        t.sync_all()?;
        drop(t);
        fs::rename(&tmp, self.file())?;
        File::open(&self.dir)?.sync_all()?;
        Ok(out)
    }

    /// Normalise `addr` and check it is in a local domain.
    pub fn check_address(&self, addr: &str) -> Result<String, AccountError> {
        let a = normalize_address(addr).ok_or_else(|| AccountError::BadAddress(addr.to_owned()))?;
        if !self.domains.iter().any(|d| d == domain_of(&a)) {
            return Err(AccountError::NotLocal {
                addr: a,
                domains: self.domains.join(", "),
            });
        }
        Ok(a)
    }

    /// Create an account.
    pub fn add(&self, addr: &str, password: &str) -> Result<String, AccountError> {
        let a = self.check_address(addr)?;
        if password.is_empty() {
            return Err(AccountError::EmptyPassword);
        }
        let hash = hash_password(password)?;
        self.edit(|f| {
            if f.accounts.contains_key(&a) || f.accounts.values().any(|r| r.aliases.contains(&a)) {
                return Err(AccountError::Exists(a.clone()));
            }
            f.accounts.insert(
                a.clone(),
                AccountRecord {
                    password: hash,
                    aliases: Vec::new(),
                    created: crate::mail::store::unix_now(),
                    deleting: false,
                },
            );
            Ok(a.clone())
        })
    }

    /// Delete an account (its mail stays in the store until purged).
    pub fn remove(&self, addr: &str) -> Result<(), AccountError> {
        let a = normalize_address(addr).ok_or_else(|| AccountError::BadAddress(addr.to_owned()))?;
        self.edit(|f| {
            f.accounts
                .remove(&a)
                .map(|_| ())
                .ok_or(AccountError::NoSuch(a.clone()))
        })?;
        let _ = fs::remove_file(self.lastlogin_path(&a));
        Ok(())
    }

    /// Set a new password.
    pub fn set_password(&self, addr: &str, password: &str) -> Result<(), AccountError> {
        let a = normalize_address(addr).ok_or_else(|| AccountError::BadAddress(addr.to_owned()))?;
        if password.is_empty() {
            return Err(AccountError::EmptyPassword);
        }
        let hash = hash_password(password)?;
        self.edit(|f| match f.accounts.get_mut(&a) {
            Some(r) => {
                r.password = hash;
                Ok(())
            }
            None => Err(AccountError::NoSuch(a.clone())),
        })
    }

    /// All account names, sorted (those being deleted left out).
    pub fn list(&self) -> Result<Vec<String>, AccountError> {
        Ok(self
            .read()?
            .accounts
            .into_iter()
            .filter(|(_, r)| !r.deleting)
            .map(|(k, _)| k)
            .collect())
    }

    /// The account an address (primary or alias) belongs to.
    pub fn account_for(&self, addr: &str) -> Result<Option<String>, AccountError> {
        let Some(a) = normalize_address(addr) else {
            return Ok(None);
        };
        let f = self.read()?;
        if let Some(r) = f.accounts.get(&a) {
            return Ok((!r.deleting).then_some(a));
        }
        Ok(f.accounts
            .iter()
            .find(|(_, r)| !r.deleting && r.aliases.contains(&a))
            .map(|(k, _)| k.clone()))
    }

    /// Every address of `account` (primary first), empty when unknown.
    pub fn addresses(&self, account: &str) -> Result<Vec<String>, AccountError> {
        let f = self.read()?;
        Ok(match f.accounts.get(account).filter(|r| !r.deleting) {
            Some(r) => std::iter::once(account.to_owned())
                .chain(r.aliases.iter().cloned())
                .collect(),
            None => Vec::new(),
        })
    }

    /// Check a login. Returns the account name on success. An unknown
    /// address creates its account when [`Accounts::may_create`] allows:
    /// outside chatmail mode with `auto_create`, an address in a local
    /// domain and a password of at least [`AUTO_CREATE_MIN_PASSWORD`]
    /// characters; in chatmail mode by its rules.
    /// Allocates the argon2 memory for this one check: servers use
    /// [`Accounts::authenticate_with`] through `mail::login`.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<Option<String>, AccountError> {
        self.authenticate_with(user, password, &mut Vec::new())
    }

    /// [`Accounts::authenticate`] with the caller's argon2 memory.
    pub fn authenticate_with(
        &self,
        user: &str,
        password: &str,
        memory: &mut Argon2Memory,
    ) -> Result<Option<String>, AccountError> {
        let res = if self.account_for(user)?.is_some() {
            self.authenticate_existing(user, password, memory)?
        } else {
            match self.may_create(user, password) {
                Ok(addr) => match self.add(&addr, password) {
                    Ok(a) => {
                        tracing::info!(account = %a, "account created on first login");
                        Some(a)
                    }
                    // Created by a concurrent first login (or being
                    // deleted): check against it.
                    Err(AccountError::Exists(_)) => {
                        self.authenticate_existing(user, password, memory)?
                    }
                    Err(e) => return Err(e),
                },
                Err(why) => {
                    if self.chatmail.is_some()
                        && !matches!(why, CreateRefused::Off | CreateRefused::NotLocal)
                    {
                        tracing::info!(address = %Escaped(user.trim()), reason = %why, "account not created on first login");
                    }
                    // Spend the same time as a real check so that timing
                    // does not tell which accounts exist.
                    let _ = verify_password(dummy_hash(), password, memory);
                    None
                }
            }
        };
        if let Some(account) = &res {
            if let Err(e) = self.record_login(account) {
                tracing::warn!(account = %account, error = %e, "cannot record the last login");
            }
        }
        Ok(res)
    }

    /// Check a login against an existing account only (no creation, no
    /// last-login record); an unknown address costs a dummy hash.
    pub fn authenticate_existing_with(
        &self,
        user: &str,
        password: &str,
        memory: &mut Argon2Memory,
    ) -> Result<Option<String>, AccountError> {
        if self.account_for(user)?.is_none() {
            let _ = verify_password(dummy_hash(), password, memory);
            return Ok(None);
        }
        self.authenticate_existing(user, password, memory)
    }

    fn authenticate_existing(
        &self,
        user: &str,
        password: &str,
        memory: &mut Argon2Memory,
    ) -> Result<Option<String>, AccountError> {
        let Some(account) = self.account_for(user)? else {
            return Ok(None);
        };
        let f = self.read()?;
        let ok = f
            .accounts
            .get(&account)
            .is_some_and(|r| verify_password(&r.password, password, memory));
        Ok(ok.then_some(account))
    }
}

/// An argon2id hash of a random password, for constant-time misses.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        generate_password()
            .and_then(|p| hash_password(&p))
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_check_agrees_with_the_argon2_verifier() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash_password("right horse battery").unwrap();
        let h = PasswordHash::new(&phc).unwrap();
        let mut mem = Vec::new();
        let mut verify_password = |phc: &str, pw: &str| verify_password(phc, pw, &mut mem);
        for pw in ["right horse battery", "wrong", ""] {
            assert_eq!(
                verify_password(&phc, pw),
                Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
                "{pw:?}"
            );
        }
        assert!(verify_password(&phc, "right horse battery"));
        // Other parameters (smaller memory) resize the reused buffer.
        let small = argon2::Params::new(1024, 1, 1, None).unwrap();
        let other = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, small)
            .hash_password(b"pw", &SaltString::encode_b64(&[7u8; 16]).unwrap())
            .unwrap()
            .to_string();
        assert!(verify_password(&other, "pw"));
        assert!(!verify_password(&other, "pW"));
        assert!(verify_password(&phc, "right horse battery"));
        for bad in [
            "",
            "$argon2id$",
            "not a hash",
            &phc.replace("argon2id", "argon2q"),
        ] {
            assert!(!verify_password(bad, "pw"), "{bad}");
        }
    }

    #[test]
    fn add_authenticate_passwd_remove() {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path(), &["example.org".into()], false);
        assert_eq!(
            a.add("Alice@Example.org", "pw1").unwrap(),
            "alice@example.org"
        );
        assert!(matches!(
            a.add("alice@example.org", "x"),
            Err(AccountError::Exists(_))
        ));
        assert!(matches!(
            a.add("bob@other.org", "x"),
            Err(AccountError::NotLocal { .. })
        ));
        assert!(matches!(
            a.add("no-at-sign", "x"),
            Err(AccountError::BadAddress(_))
        ));
        assert_eq!(
            a.authenticate("alice@example.org", "pw1")
                .unwrap()
                .as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(a.authenticate("alice@example.org", "pw2").unwrap(), None);
        a.set_password("alice@example.org", "pw2").unwrap();
        assert!(a
            .authenticate("alice@example.org", "pw2")
            .unwrap()
            .is_some());
        assert_eq!(a.list().unwrap(), vec!["alice@example.org".to_string()]);
        a.remove("alice@example.org").unwrap();
        assert_eq!(a.authenticate("alice@example.org", "pw2").unwrap(), None);
    }

    #[test]
    fn auto_create_needs_local_domain_and_long_password() {
        let d = tempfile::tempdir().unwrap();
        let a = Accounts::new(d.path(), &["example.org".into()], true);
        assert_eq!(a.authenticate("new@example.org", "short").unwrap(), None);
        assert_eq!(
            a.authenticate("new@other.org", "longenough1").unwrap(),
            None
        );
        assert!(a
            .authenticate("new@example.org", "longenough1")
            .unwrap()
            .is_some());
        assert_eq!(
            a.authenticate("new@example.org", "longenough2").unwrap(),
            None
        );
        assert!(a
            .authenticate("new@example.org", "longenough1")
            .unwrap()
            .is_some());
    }

    fn chatmail(d: &Path, new_accounts: bool, inactive: Option<Duration>) -> Accounts {
        let c = ChatmailConfig {
            new_accounts,
            delete_inactive_users_after: inactive,
            ..ChatmailConfig::default()
        };
        Accounts::new(d, &["_chat.localhost".into()], true).with_chatmail(Some(c))
    }

    #[test]
    fn chatmail_creates_only_admissible_accounts() {
        let d = tempfile::tempdir().unwrap();
        let a = chatmail(d.path(), true, None);
        assert_eq!(
            a.may_create("short@_chat.localhost", "123456789"),
            Err(CreateRefused::Inadmissible(Inadmissible::LocalPartLength {
                min: 9,
                max: 9
            }))
        );
        assert_eq!(
            a.may_create("abc+e1234@_chat.localhost", "123456789"),
            Err(CreateRefused::Inadmissible(Inadmissible::LocalPartChars))
        );
        assert_eq!(
            a.may_create("abcde1234@_chat.localhost", "12345678"),
            Err(CreateRefused::Inadmissible(
                Inadmissible::PasswordTooShort { min: 9 }
            ))
        );
        assert_eq!(
            a.may_create("ab.d_1-34@_chat.localhost", "123456789")
                .as_deref(),
            Ok("ab.d_1-34@_chat.localhost")
        );
        assert_eq!(
            a.may_create("abcde1234@elsewhere.org", "123456789"),
            Err(CreateRefused::NotLocal)
        );
        assert_eq!(
            a.authenticate("short@_chat.localhost", "123456789")
                .unwrap(),
            None
        );
        assert_eq!(
            a.authenticate("ABCDE1234@_chat.localhost", "123456789")
                .unwrap()
                .as_deref(),
            Some("abcde1234@_chat.localhost")
        );
        assert!(d.path().join(LASTLOGIN_DIR).read_dir().unwrap().count() == 1);
        // Off: no more creations, the existing account still logs in.
        let off = chatmail(d.path(), false, None);
        assert_eq!(
            off.may_create("zzzzz9999@_chat.localhost", "123456789"),
            Err(CreateRefused::NewAccountsOff)
        );
        assert_eq!(
            off.authenticate("zzzzz9999@_chat.localhost", "123456789")
                .unwrap(),
            None
        );
        assert!(off
            .authenticate("abcde1234@_chat.localhost", "123456789")
            .unwrap()
            .is_some());
    }

    #[test]
    fn login_period_is_a_day_or_shorter_for_short_deletion_periods() {
        let d = tempfile::tempdir().unwrap();
        let p = |after| chatmail(d.path(), true, after).login_period();
        assert_eq!(p(None), Duration::from_secs(86_400));
        assert_eq!(
            p(Some(Duration::from_secs(90 * 86_400))),
            Duration::from_secs(86_400)
        );
        assert_eq!(p(Some(Duration::from_secs(80))), Duration::from_secs(10));
        assert_eq!(p(Some(Duration::from_secs(2))), Duration::from_secs(1));
    }

    #[test]
    fn inactive_accounts_are_marked_then_removed_and_the_mark_blocks_them() {
        let d = tempfile::tempdir().unwrap();
        let a = chatmail(d.path(), true, Some(Duration::from_secs(90 * 86_400)));
        for n in ["aaaaaaaa1", "aaaaaaaa2", "aaaaaaaa3"] {
            a.add(&format!("{n}@_chat.localhost"), "123456789").unwrap();
        }
        let now = crate::mail::store::unix_now();
        let mut cursor = None;
        // Nobody is inactive yet.
        assert!(a
            .inactive(now - 10, &mut cursor, 10, 10)
            .unwrap()
            .is_empty());
        // Scans are bounded and resume after the cursor.
        let mut cursor = None;
        let first = a.inactive(now + 10, &mut cursor, 2, 10).unwrap();
        assert_eq!(
            first,
            ["aaaaaaaa1@_chat.localhost", "aaaaaaaa2@_chat.localhost"]
        );
        let rest = a.inactive(now + 10, &mut cursor, 2, 10).unwrap();
        assert_eq!(rest[0], "aaaaaaaa3@_chat.localhost");
        let one = ["aaaaaaaa1@_chat.localhost".to_string()];
        assert!(
            a.mark_deleting(&one, now - 10).unwrap().is_empty(),
            "still active"
        );
        assert_eq!(a.mark_deleting(&one, now + 10).unwrap(), one);
        let flags = crate::mail::chatmail::account_flags::account_dir(d.path(), &one[0]).unwrap();
        std::fs::create_dir_all(&flags).unwrap();
        std::fs::write(flags.join("allowCleartextIncoming"), "").unwrap();
        // Marked: no login, no address, no re-creation, listed first by the next scan.
        assert_eq!(a.authenticate(&one[0], "123456789").unwrap(), None);
        assert_eq!(a.account_for(&one[0]).unwrap(), None);
        assert!(matches!(
            a.add(&one[0], "123456789"),
            Err(AccountError::Exists(_))
        ));
        assert_eq!(a.inactive(0, &mut None, 0, 10).unwrap(), one);
        a.finish_delete(&one).unwrap();
        assert!(!flags.exists(), "its switches go with it");
        assert_eq!(a.list().unwrap().len(), 2);
        // Gone for good: a first login may create it again.
        assert!(a
            .authenticate(&one[0], "another-password")
            .unwrap()
            .is_some());
    }
}
