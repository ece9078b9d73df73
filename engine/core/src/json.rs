//! JSON output helpers for the engine's API and loadgen's report: both write their JSON by
//! hand (a few fixed shapes), and need one correct string escaper between them.

use std::fmt::Write as _;

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_what_json_requires() {
        assert_eq!(super::string("a\"b\n"), "\"a\\\"b\\u000a\"");
        assert_eq!(super::string("c:\\x\t"), "\"c:\\\\x\\u0009\"");
        assert_eq!(super::string("live/ü"), "\"live/ü\"");
    }
}
