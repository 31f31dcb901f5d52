//! Header fields of a raw RFC 5322 header: splitting, unfolding, comments
//! and `; name=value` parameters (RFC 2045 §5.1).

use std::ops::Range;

/// Lines of `raw[range]`: (start, end without line break, next start).
pub(super) fn lines(
    raw: &[u8],
    range: Range<usize>,
) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let end = range.end.min(raw.len());
    let mut pos = range.start.min(end);
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let start = pos;
        let rest = raw.get(start..end).unwrap_or_default();
        let (content_end, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = start + i;
                let ce = if nl > start && raw.get(nl - 1) == Some(&b'\r') {
                    nl - 1
                } else {
                    nl
                };
                (ce, nl + 1)
            }
            None => (end, end),
        };
        pos = next;
        Some((start, content_end, next))
    })
}

/// The header fields of a raw header: (name, raw value with folding).
pub fn header_fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out: Vec<(&[u8], Range<usize>)> = Vec::new();
    for (start, end, next) in lines(header, 0..header.len()) {
        if start == end {
            break;
        }
        let line = header.get(start..end).unwrap_or_default();
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(last) = out.last_mut() {
                last.1.end = next.min(header.len());
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or_default();
            let name = trim(name);
            if !name.is_empty() {
                out.push((name, start + colon + 1..next.min(header.len())));
            }
        }
    }
    out.into_iter()
        .map(|(n, r)| (n, header.get(r).unwrap_or_default()))
        .collect()
}

/// Whole raw field lines (with folding and line ends) of a header.
pub(super) fn field_ranges(header: &[u8]) -> Vec<(&[u8], Range<usize>)> {
    let mut out: Vec<(&[u8], Range<usize>)> = Vec::new();
    for (start, end, next) in lines(header, 0..header.len()) {
        if start == end {
            break;
        }
        let line = header.get(start..end).unwrap_or_default();
        let cont = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        match out.last_mut() {
            Some(last) if cont => last.1.end = next,
            _ => {
                let name = line
                    .iter()
                    .position(|&b| b == b':')
                    .map_or(line, |c| &line[..c]);
                out.push((trim(name), start..next));
            }
        }
    }
    out
}

pub(super) fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    b.get(s..e).unwrap_or_default()
}

/// Unfold a raw field value: line breaks removed, ends trimmed.
pub fn unfold(v: &[u8]) -> Vec<u8> {
    let out: Vec<u8> = v
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&out).to_vec()
}

/// The first field `name` (case-insensitive), unfolded.
pub fn header_value(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    header_fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| unfold(v))
}

pub(super) fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut esc = false;
    for c in s.chars() {
        if esc {
            esc = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                esc = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `value; a=b; c="d e"` → (value, [(a, b), (c, d e)]). RFC 2231
/// continuations are kept as separate parameters, names as written.
pub(super) fn split_params(s: &str) -> (&str, Vec<(String, String)>) {
    let (value, rest) = s.split_once(';').unwrap_or((s, ""));
    let value = value.trim();
    let mut params = Vec::new();
    let rest: Vec<char> = strip_comments(rest).chars().collect();
    let mut i = 0;
    while i < rest.len() && params.len() < 100 {
        while i < rest.len() && (rest[i].is_whitespace() || rest[i] == ';') {
            i += 1;
        }
        let ns = i;
        while i < rest.len() && rest[i] != '=' && rest[i] != ';' {
            i += 1;
        }
        let name: String = rest[ns..i].iter().collect::<String>().trim().to_owned();
        if i >= rest.len() || rest[i] == ';' {
            continue;
        }
        i += 1; // '='
        while i < rest.len() && rest[i].is_whitespace() {
            i += 1;
        }
        let mut val = String::new();
        if i < rest.len() && rest[i] == '"' {
            i += 1;
            while i < rest.len() && rest[i] != '"' {
                if rest[i] == '\\' && i + 1 < rest.len() {
                    i += 1;
                }
                val.push(rest[i]);
                i += 1;
            }
            i += 1;
            while i < rest.len() && rest[i] != ';' {
                i += 1;
            }
        } else {
            while i < rest.len() && rest[i] != ';' {
                val.push(rest[i]);
                i += 1;
            }
            val = val.trim().to_owned();
        }
        if !name.is_empty() {
            params.push((name, val));
        }
    }
    (value, params)
}
