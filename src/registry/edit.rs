//! Atomic, comment-preserving edits of the registry file for the CLI.
//!
//! `add_entry` appends the new entry's lines at the end of the `keys:`
//! list, `remove_entry` cuts one entry's lines out and `set_preauth_if`
//! rewrites one entry's `imap_preauth:` line; every other byte of
//! the file (operators' comments, order, formatting) stays as it was. Each
//! edit runs under an exclusive lock on a sidecar `<file>.lock`, so
//! concurrent `frontdoor keys add` processes serialise and all land; the
//! result is checked with `Registry::parse` (it must be the old registry
//! plus or minus exactly that entry) before it is written to a temporary
//! file in the same directory, fsynced and renamed over the original, so a
//! reader (the running server) never sees half a file. The file's mode and,
//! where permitted, owner are kept; a new file gets mode 0600.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{read_registry_file, KeyEntry, Registry};
use crate::diagnostics::Problems;
use crate::diagnostics::SourceMap;

/// Header of a registry file that `keys add` creates.
pub const NEW_FILE_HEADER: &str = "# Pinned TLS client keys (see `frontdoor keys --help`).\n\
# frontdoor reloads this file when it changes.\n";

/// Why an edit was not made. The file is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{path} has problems; fix them before editing it with frontdoor keys:\n{problems}")]
    Invalid { path: String, problems: Problems },
    #[error("{path}: cannot {what}: {err}")]
    Io {
        path: String,
        what: &'static str,
        err: std::io::Error,
    },
    #[error("a key named {name:?} is already registered in {path}")]
    DuplicateName { path: String, name: String },
    #[error("this key ({fingerprint}) is already registered in {path} as {name:?}")]
    DuplicateKey {
        path: String,
        fingerprint: String,
        name: String,
    },
    #[error("no key named {0:?} or with that fingerprint in {1}")]
    NotFound(String, String),
    #[error("{path}: {reason}; edit the file by hand")]
    Unsupported { path: String, reason: String },
    /// The caller's own check on the registry in force refused the edit
    /// (the account page: a key of another account, too many keys).
    #[error("{0}")]
    Refused(String),
}

/// Why a registry file's layout cannot be edited line by line (the file is
/// valid; it is written in a shape these edits do not handle, so the
/// operator edits it by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Layout {
    /// No line holds `keys:`.
    #[error("cannot find the keys: line")]
    NoKeysLine,
    /// `keys:` holds something other than a list.
    #[error("keys: is written as {0:?}, not as a list")]
    NotAList(String),
    /// `keys: [ … ]` rather than a block list.
    #[error("keys: is written as a flow list [ … ], not as a block list of `- name:` items")]
    FlowList,
    /// The first item of `keys:` has no line of its own.
    #[error("cannot find the first key")]
    NoFirstKey,
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> EditError + 'a {
    move |err| EditError::Io {
        path: path.display().to_string(),
        what,
        err,
    }
}

/// Append `entry` to the registry at `path` (created if missing).
pub fn add_entry(path: &Path, entry: &KeyEntry) -> Result<(), EditError> {
    add_entry_checked(path, entry, |_| Ok(()))
}

/// [`add_entry`], after `check` has passed on the registry as it stands
/// under the lock (so a limit such as keys per account holds against
/// concurrent edits).
pub fn add_entry_checked(
    path: &Path,
    entry: &KeyEntry,
    check: impl FnOnce(&Registry) -> Result<(), EditError>,
) -> Result<(), EditError> {
    let path = &target_path(path);
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        // A new data directory holds secrets-adjacent state: owner only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir, "create the directory"))?;
    }
    with_lock(path, || {
        let existing = read_existing(path)?;
        let old = match &existing {
            Some((text, _)) => parse_valid(path, text)?,
            None => Registry::default(),
        };
        check(&old)?;
        let shown = path.display().to_string();
        if old.by_name(&entry.name).is_some() {
            return Err(EditError::DuplicateName {
                path: shown,
                name: entry.name.clone(),
            });
        }
        if let Some(e) = old.lookup(&entry.fingerprint) {
            return Err(EditError::DuplicateKey {
                path: shown,
                fingerprint: entry.fingerprint.to_string(),
                name: e.name.clone(),
            });
        }
        let new_text = appended(existing.as_ref().map(|(t, _)| t.as_str()), &old, entry).map_err(
            |layout| EditError::Unsupported {
                path: shown.clone(),
                reason: layout.to_string(),
            },
        )?;
        let new = Registry::parse(path, &new_text).map_err(|problems| EditError::Unsupported {
            path: shown.clone(),
            reason: format!("appending the entry would break the file:\n{problems}"),
        })?;
        let expected_ok = new.len() == old.len() + 1
            && new.lookup(&entry.fingerprint) == Some(entry)
            && old
                .entries()
                .iter()
                .all(|e| new.by_name(&e.name) == Some(e));
        if !expected_ok {
            return Err(EditError::Unsupported {
                path: shown,
                reason:
                    "appending the entry at the end of the file would not add it to the keys: list"
                        .into(),
            });
        }
        write_atomic(path, &new_text, existing.as_ref().map(|(_, m)| m))
    })
}

/// Remove the entry named `name_or_fingerprint` (or with that fingerprint,
/// in any accepted form) and return it.
pub fn remove_entry(path: &Path, name_or_fingerprint: &str) -> Result<KeyEntry, EditError> {
    remove_entry_if(path, name_or_fingerprint, |_| true)
}

/// [`remove_entry`] only when `mine` holds for the entry found (else
/// [`EditError::NotFound`], as if it were not there).
pub fn remove_entry_if(
    path: &Path,
    name_or_fingerprint: &str,
    mine: impl Fn(&KeyEntry) -> bool,
) -> Result<KeyEntry, EditError> {
    let path = &target_path(path);
    if path.symlink_metadata().is_err() {
        return Err(EditError::NotFound(
            name_or_fingerprint.to_owned(),
            path.display().to_string(),
        ));
    }
    with_lock(path, || {
        let shown = path.display().to_string();
        let not_found = || EditError::NotFound(name_or_fingerprint.to_owned(), shown.clone());
        let Some((text, md)) = read_existing(path)? else {
            return Err(not_found());
        };
        let old = parse_valid(path, &text)?;
        let Some(entry) = old.find(name_or_fingerprint).filter(|e| mine(e)).cloned() else {
            return Err(not_found());
        };
        let index = old
            .entries()
            .iter()
            .position(|e| *e == entry)
            .ok_or_else(not_found)?;
        let new_text =
            removed(&text, index, old.len()).map_err(|layout| EditError::Unsupported {
                path: shown.clone(),
                reason: layout.to_string(),
            })?;
        let new = Registry::parse(path, &new_text).map_err(|problems| EditError::Unsupported {
            path: shown.clone(),
            reason: format!("removing the entry's lines would break the file:\n{problems}"),
        })?;
        let expected_ok = new.len() + 1 == old.len()
            && new.lookup(&entry.fingerprint).is_none()
            && old
                .entries()
                .iter()
                .filter(|e| **e != entry)
                .all(|e| new.by_name(&e.name) == Some(e));
        if !expected_ok {
            return Err(EditError::Unsupported {
                path: shown,
                reason: format!("could not cut out the lines of {:?} alone", entry.name),
            });
        }
        write_atomic(path, &new_text, Some(&md))?;
        Ok(entry)
    })
}

/// Set the `imap_preauth` of the entry named `name` (when `mine` holds for
/// it) and return the entry as it now is. Only that field's line changes
/// (one is added after the entry's last field when it has none); the rest
/// of the file stays byte for byte.
pub fn set_preauth_if(
    path: &Path,
    name: &str,
    preauth: bool,
    mine: impl Fn(&KeyEntry) -> bool,
) -> Result<KeyEntry, EditError> {
    let path = &target_path(path);
    if path.symlink_metadata().is_err() {
        return Err(EditError::NotFound(
            name.to_owned(),
            path.display().to_string(),
        ));
    }
    with_lock(path, || {
        let shown = path.display().to_string();
        let not_found = || EditError::NotFound(name.to_owned(), shown.clone());
        let Some((text, md)) = read_existing(path)? else {
            return Err(not_found());
        };
        let old = parse_valid(path, &text)?;
        let Some(entry) = old.by_name(name).filter(|e| mine(e)).cloned() else {
            return Err(not_found());
        };
        let index = old
            .entries()
            .iter()
            .position(|e| *e == entry)
            .ok_or_else(not_found)?;
        let new_text = with_preauth(&text, index, old.len(), preauth).map_err(|layout| {
            EditError::Unsupported {
                path: shown.clone(),
                reason: layout.to_string(),
            }
        })?;
        let new = Registry::parse(path, &new_text).map_err(|problems| EditError::Unsupported {
            path: shown.clone(),
            reason: format!("changing imap_preauth would break the file:\n{problems}"),
        })?;
        let want = KeyEntry {
            imap_preauth: preauth,
            ..entry.clone()
        };
        let expected_ok = new.len() == old.len()
            && new.by_name(name) == Some(&want)
            && old
                .entries()
                .iter()
                .filter(|e| **e != entry)
                .all(|e| new.by_name(&e.name) == Some(e));
        if !expected_ok {
            return Err(EditError::Unsupported {
                path: shown,
                reason: format!("could not change imap_preauth of {:?} alone", entry.name),
            });
        }
        if new_text != text {
            write_atomic(path, &new_text, Some(&md))?;
        }
        Ok(want)
    })
}

/// Edits go to the file a symlink points to, so the link stays a link.
fn target_path(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

fn parse_valid(path: &Path, text: &str) -> Result<Registry, EditError> {
    Registry::parse(path, text).map_err(|problems| EditError::Invalid {
        path: path.display().to_string(),
        problems,
    })
}

/// The file's text and metadata, or None when it does not exist.
fn read_existing(path: &Path) -> Result<Option<(String, std::fs::Metadata)>, EditError> {
    let bytes = match read_registry_file(path) {
        Ok(b) => b,
        Err(f) if f.not_found => return Ok(None),
        Err(f) => {
            return Err(EditError::Invalid {
                path: path.display().to_string(),
                problems: Problems(vec![f.problem]),
            })
        }
    };
    let md = std::fs::metadata(path).map_err(io_err(path, "read"))?;
    let text = String::from_utf8(bytes).map_err(|_| EditError::Unsupported {
        path: path.display().to_string(),
        reason: "not UTF-8 text".into(),
    })?;
    Ok(Some((text, md)))
}

/// Run `f` holding an exclusive lock on `<path>.lock`. The lock file is
/// never removed: removing it would let two editors lock different files.
fn with_lock<T>(path: &Path, f: impl FnOnce() -> Result<T, EditError>) -> Result<T, EditError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err(&lock_path, "open the lock file"))?;
    lock.lock().map_err(io_err(&lock_path, "lock"))?;
    let r = f();
    // Dropping the file releases the lock; unlock explicitly to say so.
    let _ = lock.unlock();
    r
}

fn write_atomic(path: &Path, text: &str, old: Option<&std::fs::Metadata>) -> Result<(), EditError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mode = old
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    // A temp file left by a crashed run of this same pid is stale.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp, "create the temporary file"))?;
        if let Some(m) = old {
            // Keep the owner when we may (root editing the service's file);
            // an unprivileged editor keeps its own ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        // Set after creation: the umask must not change the mode.
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp, "set the mode of"))?;
        f.write_all(text.as_bytes())
            .map_err(io_err(&tmp, "write"))?;
        f.sync_all().map_err(io_err(&tmp, "fsync"))?;
        std::fs::rename(&tmp, path).map_err(io_err(path, "replace"))?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------- pure text edits

/// `s` as a YAML scalar: plain when that reads back as the same string,
/// else double-quoted.
pub(crate) fn yaml_scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
        && matches!(serde_yaml::from_str::<serde_yaml::Value>(s), Ok(serde_yaml::Value::String(ref v)) if v == s);
    if plain_ok {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The lines of one entry, as `keys add` writes it.
pub(crate) fn entry_text(e: &KeyEntry, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut s = format!(
        "{pad}- name: {}\n{pad}  fingerprint: \"{}\"\n{pad}  account: {}\n{pad}  login: {}\n{pad}  imap_preauth: {}\n",
        yaml_scalar(&e.name),
        e.fingerprint,
        yaml_scalar(&e.account),
        yaml_scalar(&e.login),
        e.imap_preauth
    );
    if let Some(by) = &e.added_by {
        s.push_str(&format!("{pad}  added_by: {}\n", yaml_scalar(by)));
    }
    if let Some(at) = &e.added_at {
        s.push_str(&format!(
            "{pad}  added_at: \"{}\"\n",
            at.replace(['"', '\\'], "")
        ));
    }
    s
}

/// Indentation used for the items of a new list.
const NEW_LIST_INDENT: usize = 2;

/// Where the value part of a `keys:` line starts (after the colon).
fn value_start(line: &str) -> Option<usize> {
    let t = line.trim_start();
    let lead = line.len() - t.len();
    let key_len = if let Some(q @ ('"' | '\'')) = t.chars().next() {
        1 + t[1..].find(q)? + 1
    } else {
        "keys".len()
    };
    let after = t.get(key_len..)?;
    let colon = after.len() - after.trim_start().len();
    after[colon..]
        .starts_with(':')
        .then_some(lead + key_len + colon + 1)
}

/// Split `rest` into value and comment (a `#` after whitespace).
fn split_comment(rest: &str) -> (&str, &str) {
    let b = rest.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') {
            return (&rest[..i], &rest[i..]);
        }
    }
    (rest, "")
}

/// The file with `entry` appended to its `keys:` list.
pub(crate) fn appended(
    existing: Option<&str>,
    old: &Registry,
    entry: &KeyEntry,
) -> Result<String, Layout> {
    let Some(text) = existing else {
        return Ok(format!(
            "{NEW_FILE_HEADER}keys:\n{}",
            entry_text(entry, NEW_LIST_INDENT)
        ));
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
        }
    }
    let map = SourceMap::new(text);
    let Some(keys_line) = map.line("keys") else {
        // No `keys:` at all (an empty or comment-only file).
        lines.push(format!("keys:\n{}", entry_text(entry, NEW_LIST_INDENT)));
        return Ok(lines.concat());
    };
    if old.is_empty() {
        // `keys:`, `keys: []`, `keys: ~`: make the line a bare `keys:` and
        // start a block list under it.
        let line = lines.get(keys_line - 1).ok_or(Layout::NoKeysLine)?.clone();
        let at = value_start(&line).ok_or(Layout::NoKeysLine)?;
        let (value, comment) = split_comment(&line[at..]);
        let value = value.trim();
        let squeezed: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if !matches!(
            squeezed.as_str(),
            "" | "[]" | "~" | "null" | "Null" | "NULL"
        ) {
            return Err(Layout::NotAList(value.to_owned()));
        }
        let comment = comment.trim_end();
        let head = &line[..at];
        lines[keys_line - 1] = if comment.is_empty() {
            format!("{head}\n")
        } else {
            format!("{head} {comment}\n")
        };
        lines.push(entry_text(entry, NEW_LIST_INDENT));
        return Ok(lines.concat());
    }
    let first = map.line("keys[0]").ok_or(Layout::NoFirstKey)?;
    let dash = dash_line(&lines, first)
        .filter(|l| *l > keys_line)
        .ok_or(Layout::FlowList)?;
    let indent = lines[dash - 1].len() - lines[dash - 1].trim_start_matches(' ').len();
    lines.push(entry_text(entry, indent));
    Ok(lines.concat())
}

/// The 1-based line of the `-` that starts the item whose content starts on
/// `line` (the same line, or above it across blank and comment lines).
fn dash_line(lines: &[String], line: usize) -> Option<usize> {
    for l in (1..=line).rev() {
        let t = lines.get(l - 1)?.trim_start();
        if t.starts_with('-') {
            return Some(l);
        }
        if l != line && !(t.is_empty() || t.starts_with('#')) {
            return None;
        }
    }
    None
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The lines (1-based, inclusive) of item `index` of `keys:` (of `len`
/// items): from its `-` line to its last line that is not blank or a comment.
fn item_lines(
    text: &str,
    lines: &[String],
    index: usize,
    len: usize,
) -> Result<(usize, usize), Layout> {
    let map = SourceMap::new(text);
    let keys_line = map.line("keys").ok_or(Layout::NoKeysLine)?;
    let item_start = |i: usize| -> Result<usize, Layout> {
        let l = map
            .line(&SourceMap::item("keys", i))
            .filter(|l| *l > keys_line)
            .ok_or(Layout::FlowList)?;
        dash_line(lines, l)
            .filter(|d| *d > keys_line)
            .ok_or(Layout::FlowList)
    };
    let start = item_start(index)?;
    let limit = if index + 1 < len {
        item_start(index + 1)? - 1
    } else {
        lines.len()
    };
    let mut end = limit;
    while end > start && is_blank_or_comment(&lines[end - 1]) {
        end -= 1;
    }
    Ok((start, end))
}

/// The file with item `index`'s `imap_preauth:` value set to `preauth`
/// (its comment kept), or such a line added after the item's last line.
pub(crate) fn with_preauth(
    text: &str,
    index: usize,
    len: usize,
    preauth: bool,
) -> Result<String, Layout> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
        }
    }
    let (start, end) = item_lines(text, &lines, index, len)?;
    let value = if preauth { "true" } else { "false" };
    for n in start..=end {
        let line = &lines[n - 1];
        let t = line.trim_start();
        let t = if n == start {
            t.strip_prefix('-').map_or(t, str::trim_start)
        } else {
            t
        };
        if let Some(rest) = t.strip_prefix("imap_preauth:") {
            let head = &line[..line.len() - rest.len()];
            let (_, comment) = split_comment(rest.trim_end_matches('\n'));
            let comment = comment.trim_end();
            lines[n - 1] = if comment.is_empty() {
                format!("{head} {value}\n")
            } else {
                format!("{head} {value} {comment}\n")
            };
            return Ok(lines.concat());
        }
    }
    // No such line: add one, indented as the item's fields.
    let first = &lines[start - 1];
    let dash_at = first.len() - first.trim_start().len();
    let after_dash = first[dash_at + 1..].len() - first[dash_at + 1..].trim_start().len();
    let pad = " ".repeat(dash_at + 1 + after_dash);
    lines.insert(end, format!("{pad}imap_preauth: {value}\n"));
    Ok(lines.concat())
}

/// The file without the lines of item `index` of `keys:` (of `len` items):
/// from its `-` line to its last line that is not blank or a comment.
/// Comments above it and after it stay.
pub(crate) fn removed(text: &str, index: usize, len: usize) -> Result<String, Layout> {
    let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let (start, end) = item_lines(text, &lines, index, len)?;
    let mut out = String::with_capacity(text.len());
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        if n < start || n > end {
            out.push_str(l);
        }
    }
    Ok(out)
}
