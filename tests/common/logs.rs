//! The JSON log of a child process (`--log-format json`): every line kept,
//! each parsed once into an event whose fields tests check.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::poll::{poll_until, poll_until_async};

/// The lines a process wrote to stderr, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Log {
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    /// Collect `stream` line by line until it closes.
    pub fn collect(stream: impl Read + Send + 'static) -> Self {
        let log = Log::default();
        let lines = log.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        log
    }

    /// Everything so far, one line each (for failure messages).
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Every JSON event so far (lines that are not JSON are skipped).
    pub fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The first event so far that `pred` accepts.
    pub fn event(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.events().into_iter().find(|e| pred(e))
    }

    /// Events so far that `pred` accepts.
    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }

    /// Wait (bounded) for an event `pred` accepts.
    pub async fn wait_event(
        &self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let mut found = None;
        poll_until_async(within, || {
            found = self.event(&pred);
            found.is_some()
        })
        .await;
        found
    }

    /// [`Log::wait_event`] for blocking tests.
    pub fn wait_event_sync(
        &self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let mut found = None;
        poll_until(within, || {
            found = self.event(&pred);
            found.is_some()
        });
        found
    }

    /// Lines rendered as the text format shows them (`message k=v …`), so
    /// that older substring checks keep working on a JSON log.
    pub fn rendered(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut out = String::new();
        for l in lines.iter() {
            match serde_json::from_str::<Value>(l) {
                Ok(Value::Object(m)) => {
                    for k in ["level", "target"] {
                        if let Some(v) = m.get(k).and_then(Value::as_str) {
                            out.push_str(v);
                            out.push(' ');
                        }
                    }
                    if let Some(v) = m.get("message").and_then(Value::as_str) {
                        out.push_str(v);
                    }
                    for (k, v) in &m {
                        if matches!(k.as_str(), "level" | "target" | "message" | "timestamp") {
                            continue;
                        }
                        let v = match v {
                            Value::String(s) if s.contains(' ') => format!("{s:?}"),
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push_str(&format!(" {k}={v}"));
                    }
                }
                _ => out.push_str(l),
            }
            out.push('\n');
        }
        out
    }
}

/// `e[key]` as text: strings as they are, other values in JSON ("" if absent).
pub fn str_field(e: &Value, key: &str) -> String {
    match e.get(key) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `e[key]` as a number (0 if absent or not a number).
pub fn num_field(e: &Value, key: &str) -> u64 {
    e.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A connection's close line (the one event with `reason_code`).
pub fn is_close(e: &Value) -> bool {
    e.get("reason_code").is_some()
}

/// `e.level == level` (`INFO`, `WARN`, `ERROR`).
pub fn at(e: &Value, level: &str) -> bool {
    str_field(e, "level") == level
}

/// `e` is a close line with `reason_code == code`.
pub fn closed_with(e: &Value, code: &str) -> bool {
    is_close(e) && str_field(e, "reason_code") == code
}

/// No event is a panic report (a panic prints to stderr as text).
pub fn no_panic(log: &Log) -> bool {
    !log.text().contains("panicked")
}
