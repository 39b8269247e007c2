//! A minimal JSON writer: just enough to print `shmex ls --json` without a
//! dependency. Strings are escaped per RFC 8259 (quote, backslash and every
//! control character).

use std::fmt::Write;

/// A JSON value to print.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A string.
    Str(String),
    /// An unsigned integer.
    Num(u64),
    /// `true` or `false`.
    Bool(bool),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys keep their order.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// Shorthand for a string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Str(s) => write_string(out, s),
            Json::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// Appends `s` as a quoted JSON string.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let v = Json::str("a\"b\\c\nd\u{1}é");
        assert_eq!(v.to_string(), r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn nesting() {
        let v = Json::Object(vec![
            ("n", Json::Num(3)),
            ("l", Json::Array(vec![Json::str("x"), Json::Array(vec![])])),
            ("o", Json::Object(vec![])),
        ]);
        assert_eq!(v.to_string(), r#"{"n":3,"l":["x",[]],"o":{}}"#);
    }
}
