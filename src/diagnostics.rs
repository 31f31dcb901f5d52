//! Diagnostics for YAML files: where each node stands and the problems
//! found in them.
//!
//! This module owns [`SourceMap`] (a YAML path such as `listeners[0].bind`
//! or `keys[2].fingerprint` mapped to its 1-based line), [`Problem`] (one
//! `file:line: path: reason`), [`Problems`] (all of one load) and
//! [`Reporter`] (collects problems of one file with line lookups). The
//! configuration and the key registry report through it. It is a leaf: it
//! uses nothing else of the crate.
//!
//! serde_yaml reports the position of syntax and type errors itself, but
//! validation happens after deserialisation, on typed values that no longer
//! know where they came from. [`SourceMap`] walks the same text once more as
//! a YAML event stream and records the line of every key and sequence item,
//! so a validation error can name `file:line` and the path.
//!
//! Invariant: paths are written exactly as `SourceMap::child`/`item` build
//! them, so callers never format paths by hand.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// YAML path → line (1-based).
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    lines: HashMap<String, usize>,
}

impl SourceMap {
    /// Build the map. A text that does not parse yields an empty map: the
    /// caller reports serde_yaml's own error for it.
    pub fn new(text: &str) -> Self {
        let mut b = Builder::default();
        let mut p = Parser::new_from_str(text);
        if p.load(&mut b, false).is_err() {
            return Self::default();
        }
        Self { lines: b.lines }
    }

    /// Line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// `parent.key` (or `key` at the top).
    pub fn child(parent: &str, key: &str) -> String {
        if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        }
    }

    /// `parent[i]`.
    pub fn item(parent: &str, i: usize) -> String {
        format!("{parent}[{i}]")
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// The path a value starting now would have; advances the parent.
    fn value_path(&mut self) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => SourceMap::child(path, &k),
                None => path.clone(),
            },
            Some(Frame::Seq { path, next }) => {
                let p = SourceMap::item(path, *next);
                *next += 1;
                p
            }
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.lines.entry(path.to_owned()).or_insert(mark.line());
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let p = SourceMap::child(path, &s);
                        *key = Some(s);
                        self.lines.entry(p).or_insert(mark.line());
                    }
                } else {
                    let p = self.value_path();
                    self.record(&p, mark);
                }
            }
            Event::Alias(_) if !self.expecting_key() => {
                let p = self.value_path();
                self.record(&p, mark);
            }
            Event::MappingStart(..) => {
                let p = self.value_path();
                self.record(&p, mark);
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.value_path();
                self.record(&p, mark);
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// One problem found in a file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All problems of one load; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects problems of one file with line lookups.
pub struct Reporter<'a> {
    pub file: &'a Path,
    pub map: &'a SourceMap,
    pub problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a Path, map: &'a SourceMap) -> Self {
        Self {
            file,
            map,
            problems: Vec::new(),
        }
    }

    /// Report `msg` at the line of YAML `path`.
    pub fn at(&mut self, path: &str, msg: impl fmt::Display) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: self.map.line(path),
            message: if path.is_empty() {
                msg.to_string()
            } else {
                format!("{path}: {msg}")
            },
        });
    }
}

/// Turn a serde_yaml error into a problem with its line.
pub fn yaml_problem(file: &Path, e: &serde_yaml::Error) -> Problem {
    let line = e.location().map(|l| l.line());
    // serde_yaml appends " at line L column C"; the line is already in front.
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    Problem {
        file: file.to_owned(),
        line,
        message: msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_and_items() {
        let text = "# comment\nlisteners:\n  - bind: \"127.0.0.1:1\"\n    default_route: web\n  - bind: x\nroutes:\n  imap:\n    alpn: [imap, smtp]\n";
        let m = SourceMap::new(text);
        assert_eq!(m.line("listeners"), Some(2));
        assert_eq!(m.line("listeners[0].bind"), Some(3));
        assert_eq!(m.line("listeners[0].default_route"), Some(4));
        assert_eq!(m.line("listeners[1]"), Some(5));
        assert_eq!(m.line("routes.imap.alpn[1]"), Some(8));
        assert_eq!(m.line("routes.imap.nothing"), Some(7));
        assert_eq!(m.line("nowhere"), None);
    }
}
