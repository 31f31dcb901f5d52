//! Static files from `mail.chatmail.www_dir`.
//!
//! Invariants: a request path is percent-decoded once and refused if any
//! segment is `..` or `.` or holds a NUL or backslash; the file found is
//! canonicalised (symlinks resolved) and served only if it still lies
//! inside the canonical `www_dir`, so neither `..` nor a symlink leads out;
//! only regular files up to [`MAX_FILE`] bytes are served. A directory is
//! served as its `index.html`.

use std::path::{Path, PathBuf};

/// Largest file served (the relay's pages and images are small).
pub const MAX_FILE: u64 = 16 << 20;

/// Why a path is not served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The client's path is malformed or tries to leave `www_dir`.
    #[error("bad path")]
    BadPath,
    #[error("not found")]
    NotFound,
    /// The file is there but is not served (too large, unreadable).
    #[error("{0}")]
    Refused(String),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode a URI path (`%2e` is `.`); `None` when an escape is
/// malformed or the result is not UTF-8.
pub fn percent_decode(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The relative path a request path names, segment by segment; refuses
/// `..`, `.`, NUL and backslash. An empty result is the root.
pub fn relative(uri_path: &str) -> Result<PathBuf, FileError> {
    let decoded = percent_decode(uri_path).ok_or(FileError::BadPath)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg == ".." || seg == "." || seg.contains('\0') || seg.contains('\\') {
            return Err(FileError::BadPath);
        }
        rel.push(seg);
    }
    Ok(rel)
}

/// The file under `root` that `uri_path` names, checked to lie inside
/// `root` after symlinks are resolved.
pub fn resolve(root: &Path, uri_path: &str) -> Result<PathBuf, FileError> {
    let rel = relative(uri_path)?;
    let root = root
        .canonicalize()
        .map_err(|e| FileError::Refused(format!("www_dir {}: {e}", root.display())))?;
    let inside = |p: &Path| -> Result<PathBuf, FileError> {
        let c = p.canonicalize().map_err(|_| FileError::NotFound)?;
        if c.starts_with(&root) {
            Ok(c)
        } else {
            // A symlink pointing out of www_dir.
            Err(FileError::BadPath)
        }
    };
    let mut p = inside(&root.join(&rel))?;
    if p.is_dir() {
        p = inside(&p.join("index.html"))?;
    }
    let meta = std::fs::metadata(&p).map_err(|_| FileError::NotFound)?;
    if !meta.is_file() {
        return Err(FileError::NotFound);
    }
    if meta.len() > MAX_FILE {
        return Err(FileError::Refused(format!(
            "{} is larger than {MAX_FILE} bytes",
            p.display()
        )));
    }
    Ok(p)
}

/// The Content-Type for a file name.
pub fn content_type(p: &Path) -> &'static str {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "apk" => "application/vnd.android.package-archive",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        assert_eq!(relative("/a/../b"), Err(FileError::BadPath));
        assert_eq!(relative("/a/%2e%2e/b"), Err(FileError::BadPath));
        assert_eq!(relative("/a/%2E%2e"), Err(FileError::BadPath));
        assert_eq!(relative("/a%00b"), Err(FileError::BadPath));
        assert_eq!(relative("/a%5c..%5cb"), Err(FileError::BadPath));
        assert_eq!(relative("/bad%zz"), Err(FileError::BadPath));
        assert_eq!(relative("//x//y/").unwrap(), PathBuf::from("x/y"));
        assert_eq!(relative("/").unwrap(), PathBuf::new());
    }

    #[test]
    fn symlink_out_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let www = d.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::fs::write(www.join("ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), www.join("link")).unwrap();
        assert!(resolve(&www, "/ok.txt").is_ok());
        assert_eq!(resolve(&www, "/link"), Err(FileError::BadPath));
        assert_eq!(resolve(&www, "/missing"), Err(FileError::NotFound));
        assert_eq!(resolve(&www, "/"), Err(FileError::NotFound));
        assert_eq!(content_type(Path::new("a/b.SVG")), "image/svg+xml");
    }
}
