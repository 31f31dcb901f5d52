//! The DKIM keyring in `<data_dir>/dkim/`: which key pairs are kept, which
//! one signs, and rotation (`frontdoor mail dkim rotate|activate|list|retire`).
//!
//! Layout:
//! - `keys/<selector>/ed25519.der`, `keys/<selector>/rsa.der`: one pair per
//!   selector (PKCS#8 DER, 0600), published as `<selector>-ed._domainkey`
//!   and `<selector>._domainkey`;
//! - `ed25519.der`, `rsa.der` directly in `dkim/`: the first pair, made at
//!   the first start, which belongs to `mail.dkim.selector` until the first
//!   rotation moves it to `keys/<that selector>/` (hard links, a directory
//!   renamed into place, then the old names removed: a crash at any point
//!   leaves the pair readable under one name or both, never neither);
//! - `active`: the selector that signs, one line, written by `activate`
//!   (temporary file, fsync, rename). Without it, `mail.dkim.selector`
//!   signs. The running server looks at this file before each message
//!   ([`crate::mail::dkim::active`]).
//!
//! Invariants: a selector is 1 to 40 lower-case letters, digits and `-`,
//! not ending in `-ed` (that name is the ed25519 half of another); a pair
//! appears in `keys/` whole or not at all (made in a temporary directory,
//! renamed); the active selector is never retired.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::mail::dkim::{DkimError, Signer};

/// The directory of the rotated pairs, under `<data_dir>/dkim/`.
pub const KEYS: &str = "keys";
/// The file naming the active selector, in `<data_dir>/dkim/`.
pub const ACTIVE: &str = "active";
const FILES: [&str; 2] = ["ed25519.der", "rsa.der"];

/// Why a keyring operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not a selector: use 1 to 40 lower-case letters, digits and '-', not ending in '-ed'")]
    BadSelector(String),
    #[error("selector {0} exists already")]
    Exists(String),
    #[error("no key pair for selector {0}")]
    Unknown(String),
    #[error("selector {0} is the active one: activate another before retiring it")]
    Active(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0}: both the first pair and its copy under keys/ exist and differ; remove one by hand"
    )]
    Conflict(PathBuf),
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `s` can name a key pair.
pub fn valid_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.ends_with("-ed")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One kept pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub selector: String,
    /// When the pair was made (its RSA file's modification time).
    pub created: Option<SystemTime>,
    /// It signs now.
    pub active: bool,
    pub dir: PathBuf,
}

/// The keyring of one data dir, for a configured `mail.dkim.selector`.
#[derive(Debug, Clone)]
pub struct Keyring {
    dkim: PathBuf,
    configured: String,
}

fn has_pair(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Keyring {
    pub fn new(data_dir: &Path, configured_selector: &str) -> Keyring {
        Keyring {
            dkim: data_dir.join("dkim"),
            configured: configured_selector.to_owned(),
        }
    }

    /// `<data_dir>/dkim/`.
    pub fn dir(&self) -> &Path {
        &self.dkim
    }

    /// The path of the `active` file.
    pub fn active_file(&self) -> PathBuf {
        self.dkim.join(ACTIVE)
    }

    fn keys(&self) -> PathBuf {
        self.dkim.join(KEYS)
    }

    /// Where the pair of `selector` is, if it exists.
    pub fn dir_of(&self, selector: &str) -> Option<PathBuf> {
        if valid_selector(selector) || selector == self.configured {
            let d = self.keys().join(selector);
            if has_pair(&d) {
                return Some(d);
            }
        }
        (selector == self.configured && has_pair(&self.dkim)).then(|| self.dkim.clone())
    }

    /// Where the pair of `selector` is, or where a new one goes: the first
    /// pair's place while `keys/` holds none, else `keys/<selector>/`.
    pub fn dir_for_new_or_existing(&self, selector: &str) -> PathBuf {
        if let Some(d) = self.dir_of(selector) {
            return d;
        }
        if self.selectors_in_keys().is_empty() {
            self.dkim.clone()
        } else {
            self.keys().join(selector)
        }
    }

    fn selectors_in_keys(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.keys()) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && has_pair(&self.keys().join(n)))
            .collect();
        v.sort();
        v
    }

    /// The selector that signs: the `active` file's, else the configured one.
    pub fn active(&self) -> Result<String, KeyError> {
        let p = self.active_file();
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                let sel = s.trim().to_owned();
                if valid_selector(&sel) || sel == self.configured {
                    Ok(sel)
                } else {
                    Err(KeyError::BadSelector(sel))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(self.configured.clone()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every kept pair, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let active = self.active()?;
        let mut names = self.selectors_in_keys();
        if !names.contains(&self.configured) && has_pair(&self.dkim) {
            names.push(self.configured.clone());
        }
        let mut out: Vec<KeyInfo> = names
            .into_iter()
            .filter_map(|sel| {
                let dir = self.dir_of(&sel)?;
                let created = std::fs::metadata(dir.join("rsa.der"))
                    .and_then(|m| m.modified())
                    .ok();
                Some(KeyInfo {
                    active: sel == active,
                    selector: sel,
                    created,
                    dir,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.selector).cmp(&(b.created, &b.selector)));
        Ok(out)
    }

    /// The signers of every kept pair, oldest first (for `mail dns`).
    pub fn signers(&self) -> Result<Vec<Signer>, KeyError> {
        self.list()?
            .iter()
            .map(|k| Signer::load_dir(&k.dir, &k.selector).map_err(KeyError::from))
            .collect()
    }

    /// Move the first pair to `keys/<configured>/` (no-op when there is
    /// none). Every writing operation starts with it, so that the first
    /// pair keeps its name once another selector exists.
    fn adopt_first_pair(&self) -> Result<(), KeyError> {
        if !has_pair(&self.dkim) {
            return Ok(());
        }
        let keys = self.keys();
        let target = keys.join(&self.configured);
        if !has_pair(&target) {
            let tmp = keys.join(".adopt.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            for f in FILES {
                let (from, to) = (self.dkim.join(f), tmp.join(f));
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(io(&to))?;
                    std::fs::File::open(&to)
                        .and_then(|f| f.sync_all())
                        .map_err(io(&to))?;
                }
            }
            sync_dir(&tmp);
            std::fs::rename(&tmp, &target).map_err(io(&target))?;
            sync_dir(&keys);
        } else {
            for f in FILES {
                let same =
                    std::fs::read(self.dkim.join(f)).ok() == std::fs::read(target.join(f)).ok();
                if !same {
                    return Err(KeyError::Conflict(self.dkim.join(f)));
                }
            }
        }
        for f in FILES {
            let p = self.dkim.join(f);
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
        sync_dir(&self.dkim);
        tracing::info!(selector = %self.configured, dir = %target.display(), "DKIM: the first key pair now lives under keys/");
        Ok(())
    }

    /// A dated selector for a rotation made at `now`: `dkimYYYY-MM`.
    pub fn dated_selector(now: SystemTime) -> String {
        let t = humantime::format_rfc3339_seconds(now).to_string();
        format!("dkim{}", &t[..7])
    }

    /// Make a new pair for `selector` beside the kept ones (not active).
    pub fn rotate(&self, selector: &str) -> Result<Signer, KeyError> {
        if !valid_selector(selector) {
            return Err(KeyError::BadSelector(selector.to_owned()));
        }
        self.adopt_first_pair()?;
        let keys = self.keys();
        let target = keys.join(selector);
        if target.exists() {
            return Err(KeyError::Exists(selector.to_owned()));
        }
        let tmp = keys.join(format!(".new-{selector}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Signer::load_dir_quietly(&tmp, selector)?;
        sync_dir(&tmp);
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&keys);
        Ok(Signer::load_dir(&target, selector)?)
    }

    /// Make `selector` the one that signs (the running server switches
    /// before its next message).
    pub fn activate(&self, selector: &str) -> Result<(), KeyError> {
        use std::io::Write;
        self.adopt_first_pair()?;
        if self.dir_of(selector).is_none() {
            return Err(KeyError::Unknown(selector.to_owned()));
        }
        let p = self.active_file();
        let tmp = self.dkim.join(".active.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(format!("{selector}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        sync_dir(&self.dkim);
        Ok(())
    }

    /// Remove the pair of `selector` (never the active one).
    pub fn retire(&self, selector: &str) -> Result<(), KeyError> {
        self.adopt_first_pair()?;
        if self.active()? == selector {
            return Err(KeyError::Active(selector.to_owned()));
        }
        let Some(dir) = self.dir_of(selector) else {
            return Err(KeyError::Unknown(selector.to_owned()));
        };
        let gone = self.keys().join(format!(".retired-{selector}.tmp"));
        let _ = std::fs::remove_dir_all(&gone);
        std::fs::rename(&dir, &gone).map_err(io(&dir))?;
        sync_dir(&self.keys());
        std::fs::remove_dir_all(&gone).map_err(io(&gone))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked() {
        for ok in ["dkim", "dkim2026-12", "s2", "a-b"] {
            assert!(valid_selector(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "x-ed",
            "A",
            "a.b",
            "a/b",
            "..",
            &"a".repeat(41),
        ] {
            assert!(!valid_selector(bad), "{bad}");
        }
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        assert_eq!(Keyring::dated_selector(t), "dkim2026-11");
    }

    #[test]
    fn rotate_activate_retire() {
        let d = tempfile::tempdir().unwrap();
        let first = Signer::load_or_generate(d.path(), "dkim").unwrap();
        assert!(d.path().join("dkim/rsa.der").is_file());
        let ring = Keyring::new(d.path(), "dkim");
        assert_eq!(ring.active().unwrap(), "dkim");
        let l = ring.list().unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].active);
        let s2 = ring.rotate("s2").unwrap();
        // The first pair moved, same keys.
        assert!(!d.path().join("dkim/rsa.der").exists());
        let again = Signer::load_or_generate(d.path(), "dkim").unwrap();
        assert_eq!(again.txt_rsa, first.txt_rsa);
        assert_ne!(s2.txt_rsa, first.txt_rsa);
        assert!(matches!(ring.rotate("s2"), Err(KeyError::Exists(_))));
        assert!(matches!(
            ring.rotate("s2-ed"),
            Err(KeyError::BadSelector(_))
        ));
        let sels: Vec<_> = ring
            .list()
            .unwrap()
            .into_iter()
            .map(|k| (k.selector, k.active))
            .collect();
        assert_eq!(sels, vec![("dkim".into(), true), ("s2".into(), false)]);
        assert!(matches!(ring.activate("nope"), Err(KeyError::Unknown(_))));
        ring.activate("s2").unwrap();
        assert_eq!(ring.active().unwrap(), "s2");
        assert!(matches!(ring.retire("s2"), Err(KeyError::Active(_))));
        ring.retire("dkim").unwrap();
        assert!(matches!(ring.retire("dkim"), Err(KeyError::Unknown(_))));
        let sels: Vec<_> = ring
            .signers()
            .unwrap()
            .into_iter()
            .map(|s| s.selector().to_owned())
            .collect();
        assert_eq!(sels, vec!["s2"]);
    }
}
