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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

/// Shortest password accepted for chatmail-style account creation on first login.
pub const AUTO_CREATE_MIN_PASSWORD: usize = 9;

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
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
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
        }
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
        })
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

    /// All account names, sorted.
    pub fn list(&self) -> Result<Vec<String>, AccountError> {
        Ok(self.read()?.accounts.into_keys().collect())
    }

    /// The account an address (primary or alias) belongs to.
    pub fn account_for(&self, addr: &str) -> Result<Option<String>, AccountError> {
        let Some(a) = normalize_address(addr) else {
            return Ok(None);
        };
        let f = self.read()?;
        if f.accounts.contains_key(&a) {
            return Ok(Some(a));
        }
        Ok(f.accounts
            .iter()
            .find(|(_, r)| r.aliases.contains(&a))
            .map(|(k, _)| k.clone()))
    }

    /// Every address of `account` (primary first), empty when unknown.
    pub fn addresses(&self, account: &str) -> Result<Vec<String>, AccountError> {
        let f = self.read()?;
        Ok(match f.accounts.get(account) {
            Some(r) => std::iter::once(account.to_owned())
                .chain(r.aliases.iter().cloned())
                .collect(),
            None => Vec::new(),
        })
    }

    /// Check a login. Returns the account name on success. With
    /// `auto_create`, an unknown address in a local domain with a password of
    /// at least [`AUTO_CREATE_MIN_PASSWORD`] characters creates the account.
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
        let Some(account) = self.account_for(user)? else {
            if self.auto_create
                && password.chars().count() >= AUTO_CREATE_MIN_PASSWORD
                && self.check_address(user).is_ok()
            {
                return match self.add(user, password) {
                    Ok(a) => {
                        tracing::info!(account = %a, "account created on first login");
                        Ok(Some(a))
                    }
                    // Created by a concurrent first login: check against it.
                    Err(AccountError::Exists(_)) => {
                        self.authenticate_existing(user, password, memory)
                    }
                    Err(e) => Err(e),
                };
            }
            // Spend the same time as a real check so that timing does not tell
            // which accounts exist.
            let _ = verify_password(dummy_hash(), password, memory);
            return Ok(None);
        };
        let _ = account;
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
}
