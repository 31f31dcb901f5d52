//! The running server's DKIM signer, switched without a restart: before
//! each message it looks at `<data_dir>/dkim/active` (one `stat`); when
//! the file appeared, changed (`frontdoor mail dkim activate` replaces it
//! by rename, so its inode changes) or went away, the keyring
//! ([`crate::mail::dkim::keys`]) is asked for the pair of the selector it
//! names (the configured one when it is gone) and that pair signs from the
//! next message on. A switch that cannot be made (the pair is missing or
//! unreadable) is logged and the pair in use keeps signing; messages
//! already signed stay valid as long as their selector's records stay in
//! DNS, which is why `retire` is a separate step.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::mail::dkim::keys::Keyring;
use crate::mail::dkim::{DkimError, Signer};

/// What identifies one version of the `active` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        len: m.len(),
    })
}

struct State {
    seen: Option<Stamp>,
    signer: Arc<Signer>,
}

/// The signer of outgoing mail.
pub struct ActiveSigner {
    ring: Keyring,
    state: Mutex<State>,
}

impl std::fmt::Debug for ActiveSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSigner")
            .field("dir", &self.ring.dir())
            .finish_non_exhaustive()
    }
}

impl ActiveSigner {
    /// The active pair of `data_dir` (generated when it is the configured
    /// selector's and does not exist yet). Blocking file I/O.
    pub fn start(data_dir: &Path, configured: &str) -> Result<ActiveSigner, DkimError> {
        let ring = Keyring::new(data_dir, configured);
        let seen = stamp(&ring.active_file());
        let selector = ring
            .active()
            .map_err(|e| DkimError::Generate(e.to_string()))?;
        let signer = if selector == configured {
            Signer::load_or_generate(data_dir, configured)?
        } else {
            tracing::warn!(
                configured,
                active = %selector,
                "DKIM: mail.dkim.selector names another selector than `frontdoor mail dkim activate` chose; the activated one signs"
            );
            let dir = ring.dir_of(&selector).ok_or_else(|| {
                DkimError::Generate(format!("the active selector {selector} has no key pair"))
            })?;
            Signer::load_dir(&dir, &selector)?
        };
        tracing::info!(selector = %signer.selector(), "DKIM: signing");
        Ok(ActiveSigner {
            ring,
            state: Mutex::new(State {
                seen,
                signer: Arc::new(signer),
            }),
        })
    }

    /// The pair that signs now (switched first if `active` changed).
    pub fn current(&self) -> Arc<Signer> {
        let now = stamp(&self.ring.active_file());
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now != st.seen {
            st.seen = now;
            match self.load_active() {
                Ok(s) => {
                    if s.selector() != st.signer.selector() {
                        tracing::info!(from = %st.signer.selector(), to = %s.selector(), "DKIM: active selector switched");
                    }
                    st.signer = Arc::new(s);
                }
                Err(e) => tracing::error!(
                    error = %e,
                    keeps = %st.signer.selector(),
                    "DKIM: cannot switch to the active selector"
                ),
            }
        }
        st.signer.clone()
    }

    fn load_active(&self) -> Result<Signer, String> {
        let sel = self.ring.active().map_err(|e| e.to_string())?;
        let dir = self
            .ring
            .dir_of(&sel)
            .ok_or_else(|| format!("no key pair for selector {sel}"))?;
        Signer::load_dir(&dir, &sel).map_err(|e| e.to_string())
    }

    /// `msg` signed by the current pair (see [`Signer::sign_message`]).
    pub fn sign_message(&self, local_domains: &[String], msg: &[u8]) -> Vec<u8> {
        self.current().sign_message(local_domains, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_when_activated() {
        let d = tempfile::tempdir().unwrap();
        let a = ActiveSigner::start(d.path(), "dkim").unwrap();
        assert_eq!(a.current().selector(), "dkim");
        let ring = Keyring::new(d.path(), "dkim");
        ring.rotate("s2").unwrap();
        assert_eq!(a.current().selector(), "dkim");
        ring.activate("s2").unwrap();
        assert_eq!(a.current().selector(), "s2");
        let msg = b"From: <a@example.org>\r\nSubject: x\r\n\r\nbody\r\n";
        let signed = String::from_utf8(a.sign_message(&["example.org".into()], msg)).unwrap();
        assert!(
            signed.contains(" s=s2-ed;") && signed.contains(" s=s2;"),
            "{signed}"
        );
        ring.activate("dkim").unwrap();
        assert_eq!(a.current().selector(), "dkim");
        // A switch to a missing pair keeps the one in use.
        std::fs::write(ring.active_file(), "gone\n").unwrap();
        assert_eq!(a.current().selector(), "dkim");
    }
}
