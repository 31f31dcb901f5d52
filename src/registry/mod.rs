//! The pinned-key registry: which client public keys frontdoor knows, and
//! the identity each one stands for (DESIGN §3).
//!
//! The registry is a small YAML file (`keys:` list of `name`,
//! `fingerprint`, `account`, `login`, `imap_preauth`, and `added_by`,
//! `added_at` where recorded), edited by hand or by
//! `frontdoor keys …`. This module owns:
//! - `fingerprint`: the SHA-256 SPKI fingerprint and its accepted written forms;
//! - `keys`: public keys from certificates and key files, and the key kinds accepted;
//! - parsing and validation (here): every problem is reported with `file:line`,
//!   and a `Registry` value is always fully valid (unique names and fingerprints,
//!   non-empty account and login, login an address);
//! - `generate`: client key pairs, minimal certificates and PKCS#12 bundles;
//! - `edit`: atomic, comment-preserving edits for the CLI;
//! - `live`: the registry in force for a running server, reloaded when the file
//!   changes, keeping the last good one when an edit is broken.
//!
//! Reading a registry file refuses world-writable files (anyone could pin a
//! key) and files over `MAX_REGISTRY_FILE` bytes, before reading them.

pub mod edit;
pub mod fingerprint;
pub mod generate;
pub mod keys;
pub mod live;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_yaml::Value;

pub use edit::{
    add_entry, add_entry_checked, remove_entry, remove_entry_if, set_preauth_if, EditError,
};
pub use fingerprint::{fingerprint_spki, Fingerprint, FingerprintError};
pub use keys::{check_key_acceptable, load_public_key, spki_from_cert_der, KeyError, KeyKind};
pub use live::RegistryHandle;

use crate::diagnostics::SourceMap;
use crate::diagnostics::{yaml_problem, Problem, Problems, Reporter};

/// A registry file larger than this is refused unread (1 MiB holds some
/// 5000 keys).
pub const MAX_REGISTRY_FILE: u64 = 1 << 20;

/// Fields of one key entry, in the order they are written.
/// Longest name, account or login: three of them and the rest of a PROXY
/// header stay far below `proxy_protocol::MAX_V2_LEN`.
pub const MAX_FIELD_LEN: usize = 320;
pub const FIELDS: [&str; 7] = [
    "name",
    "fingerprint",
    "account",
    "login",
    "imap_preauth",
    "added_by",
    "added_at",
];
/// `added_by` of the entries that users add themselves on the account page.
pub const ADDED_BY_SELF: &str = "self";

/// One pinned key and the identity it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The operator's name for this key (a device), unique in the registry.
    pub name: String,
    pub fingerprint: Fingerprint,
    /// The backend account the key logs in to.
    pub account: String,
    /// The login address (goes to the backend as the verified user name).
    pub login: String,
    /// Whether the IMAP backend may greet with `* PREAUTH` (default true).
    pub imap_preauth: bool,
    /// Who pinned it, when recorded: [`ADDED_BY_SELF`] for the account
    /// page; an operator's edit leaves it out.
    pub added_by: Option<String>,
    /// When, as written (RFC 3339 UTC from the account page).
    pub added_at: Option<String>,
}

/// A validated registry: names and fingerprints are unique.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Vec<KeyEntry>,
    by_fingerprint: HashMap<Fingerprint, usize>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    /// The entry pinned for this key, if any.
    pub fn lookup(&self, fp: &Fingerprint) -> Option<&KeyEntry> {
        self.by_fingerprint.get(fp).map(|&i| &self.entries[i])
    }

    /// The one call a TLS verifier needs: refuse a key of a kind frontdoor
    /// does not accept, else give its fingerprint and its entry (None: not
    /// pinned). `spki_der` is the certificate's SubjectPublicKeyInfo
    /// (`spki_from_cert_der`).
    pub fn identify_spki(
        &self,
        spki_der: &[u8],
    ) -> Result<(Fingerprint, Option<&KeyEntry>), KeyError> {
        check_key_acceptable(spki_der)?;
        let fp = fingerprint_spki(spki_der);
        Ok((fp, self.lookup(&fp)))
    }

    /// The entry with this name, if any.
    pub fn by_name(&self, name: &str) -> Option<&KeyEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// The entry named `name_or_fingerprint`, else the one whose
    /// fingerprint it is (in any accepted form).
    pub fn find(&self, name_or_fingerprint: &str) -> Option<&KeyEntry> {
        self.by_name(name_or_fingerprint).or_else(|| {
            name_or_fingerprint
                .parse::<Fingerprint>()
                .ok()
                .and_then(|fp| self.lookup(&fp))
        })
    }

    /// Entries in file order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Build from entries already known to be valid; errors name the first
    /// duplicate. (Tests and programs that make registries in memory.)
    pub fn from_entries(entries: Vec<KeyEntry>) -> Result<Registry, DuplicateEntry> {
        let mut r = Registry::default();
        for e in entries {
            if r.by_name.contains_key(&e.name) {
                return Err(DuplicateEntry::Name(e.name));
            }
            if r.by_fingerprint.contains_key(&e.fingerprint) {
                return Err(DuplicateEntry::Fingerprint(e.fingerprint));
            }
            r.push(e);
        }
        Ok(r)
    }

    fn push(&mut self, e: KeyEntry) {
        let i = self.entries.len();
        self.by_fingerprint.insert(e.fingerprint, i);
        self.by_name.insert(e.name.clone(), i);
        self.entries.push(e);
    }

    /// Read, parse and validate the registry at `path`.
    pub fn load(path: &Path) -> Result<Registry, Problems> {
        let bytes = read_registry_file(path).map_err(|f| Problems(vec![f.problem]))?;
        Self::parse_bytes(path, &bytes)
    }

    /// Parse file contents that may not be UTF-8.
    pub(crate) fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Registry, Problems> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_owned(),
                line: Some(
                    1 + bytes[..e.valid_up_to()]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count(),
                ),
                message: "not UTF-8 text".into(),
            }])
        })?;
        Self::parse(path, text)
    }

    /// Parse and validate `text` as if read from `path`, reporting every
    /// problem with its line.
    pub fn parse(path: &Path, text: &str) -> Result<Registry, Problems> {
        let doc: Value =
            serde_yaml::from_str(text).map_err(|e| Problems(vec![yaml_problem(path, &e)]))?;
        let map = SourceMap::new(text);
        let mut r = Reporter::new(path, &map);
        let reg = validate(&doc, &mut r);
        if r.problems.is_empty() {
            Ok(reg)
        } else {
            r.problems.sort_by_key(|p| p.line);
            Err(Problems(r.problems))
        }
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

fn validate(doc: &Value, r: &mut Reporter) -> Registry {
    let mut reg = Registry::default();
    let keys = match doc {
        Value::Null => return reg,
        Value::Mapping(m) => {
            let mut keys = None;
            for (k, v) in m {
                let name = key_text(k);
                if name == "keys" {
                    keys = Some(v);
                } else {
                    r.at(&name, format!("unknown field `{name}`, expected `keys`"));
                }
            }
            match keys {
                None | Some(Value::Null) => return reg,
                Some(k) => k,
            }
        }
        _ => {
            r.at("", "expected a mapping with a `keys:` list");
            return reg;
        }
    };
    let Value::Sequence(items) = keys else {
        r.at("keys", "expected a list of keys (`- name: …` items)");
        return reg;
    };
    let mut first_by_name: HashMap<String, usize> = HashMap::new();
    let mut first_by_fp: HashMap<Fingerprint, (usize, String)> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = SourceMap::item("keys", i);
        // Duplicates are checked on whichever of name and fingerprint are
        // valid, even when other fields of the item are not.
        let item = entry(item, &p, r);
        let mut dup = false;
        if let Some(name) = &item.name {
            match first_by_name.get(name) {
                Some(j) => {
                    r.at(
                        &SourceMap::child(&p, "name"),
                        format!("name {name:?} is already used by keys[{j}]"),
                    );
                    dup = true;
                }
                None => {
                    first_by_name.insert(name.clone(), i);
                }
            }
        }
        if let Some(fp) = item.fingerprint {
            match first_by_fp.get(&fp) {
                Some((j, other)) => {
                    r.at(
                        &SourceMap::child(&p, "fingerprint"),
                        format!("the same key is already registered as keys[{j}] ({other:?}); a key may be registered once"),
                    );
                    dup = true;
                }
                None => {
                    first_by_fp.insert(fp, (i, item.name.clone().unwrap_or_default()));
                }
            }
        }
        if let (Some(e), false) = (item.entry, dup) {
            reg.push(e);
        }
    }
    reg
}

/// What one `keys[i]` item yielded: its valid name and fingerprint (for
/// duplicate checks), and the whole entry if every field is valid.
#[derive(Default)]
struct ParsedItem {
    name: Option<String>,
    fingerprint: Option<Fingerprint>,
    entry: Option<KeyEntry>,
}

/// Parse one `keys[i]` item, reporting each bad field.
fn entry(item: &Value, p: &str, r: &mut Reporter) -> ParsedItem {
    let Value::Mapping(m) = item else {
        r.at(
            p,
            "expected a mapping with name, fingerprint, account, login and optionally imap_preauth",
        );
        return ParsedItem::default();
    };
    let before = r.problems.len();
    let mut fields: HashMap<&str, &Value> = HashMap::new();
    for (k, v) in m {
        let name = key_text(k);
        match FIELDS.iter().find(|f| **f == name) {
            Some(f) => {
                fields.insert(f, v);
            }
            None => r.at(
                &SourceMap::child(p, &name),
                format!(
                    "unknown field `{name}`, expected one of {}",
                    FIELDS.map(|f| format!("`{f}`")).join(", ")
                ),
            ),
        }
    }
    let text = |f: &str, r: &mut Reporter| -> Option<String> {
        let fp = SourceMap::child(p, f);
        match fields.get(f) {
            None => {
                r.at(p, format!("missing field `{f}`"));
                None
            }
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    r.at(&fp, "must not be empty");
                    None
                } else if s.chars().any(char::is_control) {
                    r.at(&fp, "must not contain control characters");
                    None
                } else if s.len() > MAX_FIELD_LEN {
                    // They travel in the PROXY header, whose size backends bound.
                    r.at(&fp, format!("longer than {MAX_FIELD_LEN} bytes"));
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(_) => {
                r.at(&fp, "must be a string");
                None
            }
        }
    };
    let name = text("name", r);
    let fingerprint = text("fingerprint", r).and_then(|s| match s.parse::<Fingerprint>() {
        Ok(f) => Some(f),
        Err(e) => {
            r.at(&SourceMap::child(p, "fingerprint"), e);
            None
        }
    });
    let account = text("account", r);
    let login = text("login", r).and_then(|l| {
        if l.contains('@') {
            Some(l)
        } else {
            r.at(
                &SourceMap::child(p, "login"),
                format!("login {l:?} is not an address (no @)"),
            );
            None
        }
    });
    let imap_preauth = match fields.get("imap_preauth") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            r.at(
                &SourceMap::child(p, "imap_preauth"),
                "must be true or false",
            );
            true
        }
    };
    let optional = |f: &str, r: &mut Reporter| -> Option<String> {
        if fields.contains_key(f) {
            text(f, r)
        } else {
            None
        }
    };
    let added_by = optional("added_by", r);
    let added_at = optional("added_at", r);
    let entry = match (&name, fingerprint, account, login) {
        (Some(name), Some(fingerprint), Some(account), Some(login))
            if r.problems.len() == before =>
        {
            Some(KeyEntry {
                name: name.clone(),
                fingerprint,
                account,
                login,
                imap_preauth,
                added_by,
                added_at,
            })
        }
        _ => None,
    };
    ParsedItem {
        name,
        fingerprint,
        entry,
    }
}

/// A registry file could not be read; `not_found` lets editors start a new one.
#[derive(Debug)]
pub(crate) struct ReadFailure {
    pub not_found: bool,
    pub problem: Problem,
}

/// Read a registry file: a regular file, not world-writable, at most
/// `MAX_REGISTRY_FILE` bytes (checked before reading, and again while
/// reading in case it grows).
pub(crate) fn read_registry_file(path: &Path) -> Result<Vec<u8>, ReadFailure> {
    let fail = |not_found: bool, message: String| ReadFailure {
        not_found,
        problem: Problem {
            file: path.to_owned(),
            line: None,
            message,
        },
    };
    let io = |e: std::io::Error| {
        fail(
            e.kind() == std::io::ErrorKind::NotFound,
            format!("cannot read: {e}"),
        )
    };
    // Look before opening: opening a FIFO would block.
    let refused = |r: FileRefusal| fail(false, r.to_string());
    check_metadata(&std::fs::metadata(path).map_err(io)?, path).map_err(refused)?;
    let f = std::fs::File::open(path).map_err(io)?;
    check_metadata(&f.metadata().map_err(io)?, path).map_err(refused)?;
    let mut buf = Vec::new();
    f.take(MAX_REGISTRY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_REGISTRY_FILE {
        return Err(refused(FileRefusal::TooLarge(buf.len() as u64)));
    }
    Ok(buf)
}

/// Why a registry file is not read. The operator's to fix: the file as it
/// stands on disk.
#[derive(Debug, thiserror::Error)]
pub enum FileRefusal {
    /// A directory, FIFO, device or socket.
    #[error("not a regular file")]
    NotAFile,
    /// Writable by anyone on the machine.
    #[error(
        "the file is world-writable (mode {mode:04o}): anyone on this machine could pin a key; \
         run `chmod o-w {}`",
        path.display()
    )]
    WorldWritable {
        /// The file's permission bits.
        mode: u32,
        /// The file.
        path: std::path::PathBuf,
    },
    /// Longer than [`MAX_REGISTRY_FILE`].
    #[error("the file is {0} bytes or more; a registry may have at most {MAX_REGISTRY_FILE} bytes (1 MiB): is this the right file?")]
    TooLarge(u64),
}

/// Two entries of an in-memory registry that clash (the caller's fault).
#[derive(Debug, thiserror::Error)]
pub enum DuplicateEntry {
    /// Two entries with one name.
    #[error("duplicate name {0:?}")]
    Name(String),
    /// Two entries with one key.
    #[error("duplicate fingerprint {0}")]
    Fingerprint(Fingerprint),
}

fn check_metadata(md: &std::fs::Metadata, path: &Path) -> Result<(), FileRefusal> {
    use std::os::unix::fs::PermissionsExt;
    if !md.is_file() {
        return Err(FileRefusal::NotAFile);
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(FileRefusal::WorldWritable {
            mode,
            path: path.to_owned(),
        });
    }
    if md.len() > MAX_REGISTRY_FILE {
        return Err(FileRefusal::TooLarge(md.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
