//! Names and the rules for untrusted text.

use std::fmt;

use compact_str::CompactString;
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
///
/// Held inline when 24 bytes or fewer (most names): rows carry dozens of
/// names, and decoding or cloning each into its own allocation was a
/// visible share of a report's and of an event's cost. It hashes, orders
/// and serialises as the text itself, as a `String` would.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(CompactString);

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
        Ok(Self(CompactString::from(text)))
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

    /// Names kept inline (short) and on the heap (long) read, order and
    /// serialise as their text: the services of a report are listed in
    /// the order of their names, and stored rows and events hold the text.
    #[test]
    fn short_and_long_names_behave_as_their_text() {
        let short = "mysql";
        let long = format!("{}-{}", "x".repeat(200), "wordpress");
        let texts = [long.as_str(), short, "apache", "z"];
        let mut names: Vec<Name> = texts.iter().map(|t| Name::parse(t).unwrap()).collect();
        names.sort();
        let mut sorted = texts.to_vec();
        sorted.sort();
        let names_as_text: Vec<&str> = names.iter().map(Name::as_str).collect();
        assert_eq!(names_as_text, sorted);
        for text in texts {
            let name = Name::parse(text).unwrap();
            let json = serde_json::to_string(&name).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), name);
            assert_eq!(name.to_string(), text);
        }
    }
}
