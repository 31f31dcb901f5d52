//! The identity secret: the HMAC key the front door signs PROXY headers
//! with and the bundled mail servers check them with. One reader with one
//! set of checks for both sides, and the generator for one-process
//! configurations.
//!
//! Invariants: a secret is the file's bytes with surrounding ASCII
//! whitespace trimmed, at least [`MIN_LEN`] bytes, in a file that others
//! cannot read or write; a generated file is created 0600 with 32 random
//! bytes (base64), never overwritten.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Shortest secret accepted.
pub const MIN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{}: cannot read identity_secret: {err}", .path.display())]
    Read { path: PathBuf, err: io::Error },
    #[error("{}: identity_secret must not be readable or writable by others: chmod o-rwx {}", .path.display(), .path.display())]
    Exposed { path: PathBuf },
    #[error("{}: identity_secret must hold at least 16 bytes (e.g. `head -c 32 /dev/urandom | base64 > {}`)", .path.display(), .path.display())]
    Short { path: PathBuf },
    #[error("{}: cannot create identity_secret: {err}", .path.display())]
    Create { path: PathBuf, err: io::Error },
}

/// Read and check the secret at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o007 != 0 {
            return Err(SecretError::Exposed {
                path: path.to_owned(),
            });
        }
    }
    let raw = std::fs::read(path).map_err(|err| SecretError::Read {
        path: path.to_owned(),
        err,
    })?;
    let trimmed = raw.trim_ascii();
    if trimmed.len() < MIN_LEN {
        return Err(SecretError::Short {
            path: path.to_owned(),
        });
    }
    Ok(trimmed.to_vec())
}

/// Create `path` (mode 0600, 32 random bytes in base64) unless it exists.
/// Returns whether it was created here.
pub fn generate(path: &Path) -> Result<bool, SecretError> {
    let err = |err| SecretError::Create {
        path: path.to_owned(),
        err,
    };
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| err(io::Error::other("no randomness from the OS")))?;
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(raw);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(format!("{text}\n").as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
            Ok(true)
        }
        // Another start made it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_reads_back_and_bad_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/identity_secret");
        assert!(generate(&p).unwrap());
        assert!(!generate(&p).unwrap(), "never overwritten");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(&p).unwrap().len(), 44);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read(&p), Err(SecretError::Exposed { .. })));
        let short = d.path().join("short");
        std::fs::write(&short, "  tooshort \n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read(&short), Err(SecretError::Short { .. })));
        assert!(matches!(
            read(&d.path().join("none")),
            Err(SecretError::Read { .. })
        ));
    }
}
