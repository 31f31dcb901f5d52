//! The durable MTA-STS policy cache (RFC 8461 §5.1): one JSON file per
//! recipient domain in `<data_dir>/mta-sts/`, holding the policy's text as
//! fetched, the `_mta-sts` record `id` it was fetched for, and when it
//! expires (fetch time plus `max_age`). Written under a temporary name,
//! fsynced and renamed, so a crash leaves the old entry or the new one.
//! The policy text is parsed again on every load: a file edited by hand or
//! left by an older version is refused like a bad fetch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::policy::{self, Policy};

/// One cached policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub id: String,
    /// Unix seconds.
    pub fetched: i64,
    pub expires: i64,
    pub text: String,
    pub policy: Policy,
}

#[derive(Serialize, Deserialize)]
struct File {
    domain: String,
    id: String,
    fetched: i64,
    expires: i64,
    policy: String,
}

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("MTA-STS cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("MTA-STS cache {path}: {why}")]
    Bad { path: PathBuf, why: String },
}

/// The cache directory of a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("mta-sts")
}

/// The file for `domain`, or `None` for a name that is not a plain
/// lower-case host name (such a domain is never cached).
fn path(dir: &Path, domain: &str) -> Option<PathBuf> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    ok.then(|| dir.join(format!("{domain}.json")))
}

/// The cached policy for `domain`, if any.
pub fn load(dir: &Path, domain: &str) -> Result<Option<Cached>, CacheError> {
    let Some(p) = path(dir, domain) else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CacheError::Io { path: p, source }),
    };
    let bad = |why: String| CacheError::Bad {
        path: p.clone(),
        why,
    };
    let f: File = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if f.domain != domain {
        return Err(bad(format!("holds the policy of {}", f.domain)));
    }
    let policy = policy::parse(f.policy.as_bytes()).map_err(|e| bad(e.to_string()))?;
    Ok(Some(Cached {
        id: f.id,
        fetched: f.fetched,
        expires: f.expires,
        text: f.policy,
        policy,
    }))
}

/// Store `c` as the policy of `domain` (durably).
pub fn store(dir: &Path, domain: &str, c: &Cached) -> Result<(), CacheError> {
    use std::io::Write;
    let Some(p) = path(dir, domain) else {
        return Ok(());
    };
    let io = |source| CacheError::Io {
        path: p.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let body = serde_json::to_vec(&File {
        domain: domain.to_owned(),
        id: c.id.clone(),
        fetched: c.fetched,
        expires: c.expires,
        policy: c.text.clone(),
    })
    .map_err(|e| CacheError::Bad {
        path: p.clone(),
        why: e.to_string(),
    })?;
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &p).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let text = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 60\n".to_owned();
        let c = Cached {
            id: "abc".into(),
            fetched: 10,
            expires: 70,
            policy: policy::parse(text.as_bytes()).unwrap(),
            text,
        };
        assert_eq!(load(d.path(), "example.org").unwrap(), None);
        store(d.path(), "example.org", &c).unwrap();
        assert_eq!(load(d.path(), "example.org").unwrap(), Some(c.clone()));
        // Names that are no plain host name are never a path.
        for bad in ["../x", "a/b", "", ".x", "A.example"] {
            store(d.path(), bad, &c).unwrap();
            assert_eq!(load(d.path(), bad).unwrap(), None, "{bad}");
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        std::fs::write(d.path().join("example.org.json"), b"{\"junk\":1}").unwrap();
        assert!(load(d.path(), "example.org").is_err());
    }
}
