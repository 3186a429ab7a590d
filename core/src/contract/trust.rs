//! Which config servers may publish: an optional allow-list of patterns on
//! the CloudEvents `source`. An event from any other source is refused with
//! the reason `untrusted_source`.

use std::fmt;
use std::str::FromStr;

use super::error::DecodeError;
use super::event::Event;
use crate::domain::{truncate, Source};

/// A pattern on event sources: `*` matches any run of characters
/// (including none) and every other character matches itself, e.g.
/// `/configserver/*`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SourcePattern(String);

impl FromStr for SourcePattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a source pattern cannot be empty".into());
        }
        Source::parse(&text.replace('*', "x"))
            .map(|_| Self(text.to_owned()))
            .map_err(|problem| format!("`{}` {problem}", truncate(text)))
    }
}

impl fmt::Display for SourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SourcePattern {
    pub fn matches(&self, source: &Source) -> bool {
        glob_matches(self.0.as_bytes(), source.as_str().as_bytes())
    }
}

/// `*` matches any run of bytes; iterative, with backtracking to the last
/// star only (linear enough for 255-character sources).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

/// The sources a service accepts events from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedSources {
    /// Empty: every source is trusted.
    patterns: Vec<SourcePattern>,
}

impl TrustedSources {
    pub fn new(patterns: Vec<SourcePattern>) -> Self {
        Self { patterns }
    }

    /// Refuses an event whose source matches none of the patterns (when
    /// there are any).
    pub fn check(&self, event: &Event) -> Result<(), DecodeError> {
        let source = event.source();
        if self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(source)) {
            return Ok(());
        }
        Err(DecodeError::UntrustedSource(truncate(source.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(s: &str) -> Source {
        Source::parse(s).unwrap()
    }

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        let p: SourcePattern = "/configserver/*".parse().unwrap();
        assert!(p.matches(&source("/configserver/cs-01")));
        assert!(p.matches(&source("/configserver/")));
        assert!(!p.matches(&source("/evil/configserver/cs-01")));
        let p: SourcePattern = "*/cs-*-eu".parse().unwrap();
        assert!(p.matches(&source("/configserver/cs-01-eu")));
        assert!(!p.matches(&source("/configserver/cs-01-us")));
        let exact: SourcePattern = "/configserver/cs-01".parse().unwrap();
        assert!(exact.matches(&source("/configserver/cs-01")));
        assert!(!exact.matches(&source("/configserver/cs-011")));
        assert!("".parse::<SourcePattern>().is_err());
        assert!("/cs\u{1}*".parse::<SourcePattern>().is_err());
    }
}
