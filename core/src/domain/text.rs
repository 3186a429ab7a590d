//! Names and the rules for untrusted text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name (service, parameter, assembly, deployment) we accept, in
/// characters. Names end up in URLs and XML attributes; an unbounded one
/// would let one event bloat every report that mentions it.
pub const MAX_NAME_CHARS: usize = 255;

/// Shortens untrusted text quoted in an error message.
pub fn truncate(text: &str) -> String {
    if text.chars().count() <= 64 {
        text.to_owned()
    } else {
        let head: String = text.chars().take(64).collect();
        format!("{head}...")
    }
}

/// The characters refused in every string of an event (names, ids,
/// sources, free text), as in `schemas/events.schema.json`: the C0
/// controls and DEL (XML 1.0 cannot carry most of C0, and none of them
/// belongs in a name), and U+FFFE and U+FFFF, which are not characters in
/// XML 1.0. Whatever is accepted can be written into any report.
pub fn is_refused_char(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}'
}

/// Why `text` is refused, if it holds a refused character.
pub fn refused_char_problem(text: &str) -> Option<String> {
    text.chars().find(|c| is_refused_char(*c)).map(|c| {
        format!(
            "contains the character U+{:04X}, which is refused",
            c as u32
        )
    })
}

/// A service, parameter, assembly or deployment name: 1 to 255 characters,
/// no control characters (XML 1.0 cannot carry most of them) and no `/`
/// (service names are path segments of the reporting API).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars = text.chars().count();
        if chars == 0 {
            return Err("is empty".into());
        }
        if chars > MAX_NAME_CHARS {
            return Err(format!(
                "is {chars} characters long, more than {MAX_NAME_CHARS}"
            ));
        }
        if let Some(problem) = refused_char_problem(text) {
            return Err(problem);
        }
        if text.contains('/') {
            return Err(format!("`{}` contains `/`", truncate(text)));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_safe_for_paths_and_xml() {
        assert!(Name::parse("wordpress").is_ok());
        assert!(Name::parse(&"x".repeat(255)).is_ok());
        assert!(Name::parse(&"x".repeat(256)).unwrap_err().contains("256"));
        assert!(Name::parse("").is_err());
        assert!(Name::parse("a/b").is_err());
        assert!(Name::parse("a\u{1}b").unwrap_err().contains("U+0001"));
        assert!(Name::parse("a\u{7f}b").is_err());
        assert!(Name::parse("a\u{fffe}b").unwrap_err().contains("U+FFFE"));
        assert!(Name::parse("a\u{ffff}").is_err());
        assert!(
            Name::parse("caf\u{e9} \u{85}").is_ok(),
            "C1 is allowed, as in the schema"
        );
    }
}
