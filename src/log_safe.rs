//! Client-chosen text on its way into a log line, for `%` (Display) fields
//! and messages: control characters (C0, DEL, C1), line and paragraph
//! separators and invisible formatting characters (bidi overrides,
//! zero-width ones) are written as escapes, backslashes doubled, and the
//! output is bounded, so that one log line stays one line and reads as what
//! it held. tracing's `?` (Debug) escapes too, but quotes every value; text
//! a parser has already validated (a DNS name, a negotiated ALPN value)
//! needs neither, and this is the second line of defence for it.

use std::fmt::{self, Write};

/// Characters written before the rest is cut off.
pub const MAX_CHARS: usize = 256;

/// `value`, escaped and bounded, when displayed.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Escaper {
            out: f,
            chars: 0,
            cut: 0,
        };
        write!(w, "{}", self.0)?;
        if w.cut > 0 {
            write!(w.out, "...({} more bytes)", w.cut)?;
        }
        Ok(())
    }
}

/// Whether `c` is written as an escape.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'   // zero-width, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'              // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

struct Escaper<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    chars: usize,
    /// Bytes not written once `MAX_CHARS` was reached.
    cut: usize,
}

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.chars >= MAX_CHARS {
                self.cut += c.len_utf8();
                continue;
            }
            self.chars += 1;
            match c {
                '\\' => self.out.write_str("\\\\")?,
                '\n' => self.out.write_str("\\n")?,
                '\r' => self.out.write_str("\\r")?,
                '\t' => self.out.write_str("\\t")?,
                c if needs_escape(c) => write!(self.out, "\\u{{{:x}}}", c as u32)?,
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> String {
        Escaped(s).to_string()
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(e("imap.example.org"), "imap.example.org");
        assert_eq!(e("Grüße, 日本"), "Grüße, 日本");
        assert_eq!(e(""), "");
    }

    #[test]
    fn line_breaks_and_invisible_characters_are_escaped() {
        assert_eq!(
            e("a.example\nFORGED connection closed"),
            "a.example\\nFORGED connection closed"
        );
        assert_eq!(e("x\r\ty\\z"), "x\\r\\ty\\\\z");
        assert_eq!(e("\u{1b}[31mred\u{7f}"), "\\u{1b}[31mred\\u{7f}");
        assert_eq!(
            e("a\u{85}b\u{2028}c\u{2029}"),
            "a\\u{85}b\\u{2028}c\\u{2029}"
        );
        assert_eq!(e("\u{202e}gpj.exe\u{200b}"), "\\u{202e}gpj.exe\\u{200b}");
        assert_eq!(e("\0"), "\\u{0}");
        // What comes out never holds a line break of any kind.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = Escaped(&all).to_string();
        assert!(!out.chars().any(needs_escape), "{out:?}");
    }

    #[test]
    fn length_is_bounded() {
        let long = "é".repeat(1000);
        let out = e(&long);
        assert!(out.starts_with(&"é".repeat(MAX_CHARS)));
        assert_eq!(
            &out[MAX_CHARS * 2..],
            format!("...({} more bytes)", (1000 - MAX_CHARS) * 2)
        );
        // An escape counts as one character.
        let out = e(&"\n".repeat(MAX_CHARS + 1));
        assert_eq!(out, format!("{}...(1 more bytes)", "\\n".repeat(MAX_CHARS)));
    }

    #[test]
    fn display_values_are_escaped_too() {
        struct Reply(&'static str);
        impl fmt::Display for Reply {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "555 5.5.4 Unsupported parameter {}", self.0)
            }
        }
        assert_eq!(
            Escaped(Reply("X=\u{1b}]0;t\u{7}")).to_string(),
            "555 5.5.4 Unsupported parameter X=\\u{1b}]0;t\\u{7}"
        );
    }
}
