//! Durations as people write them on a command line: `90s`, `15m`, `2h`,
//! `30d`, `250ms`.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

/// A duration read from and shown as `15m`, `90s`, `1h30m`, `30d`,
/// `250ms` (a bare number is seconds).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(seconds: u64) -> Self {
        Self(Duration::from_secs(seconds))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    /// One or more parts, each a number and a unit (`1h30m`); a bare
    /// number is seconds.
    fn from_str(text: &str) -> Result<Self, String> {
        let whole = text.trim();
        let mut rest = whole;
        let mut seconds = 0.0;
        while !rest.is_empty() {
            let number_end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let unit_end = rest[number_end..]
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .map_or(rest.len(), |i| number_end + i);
            let number: f64 = rest[..number_end]
                .parse()
                .map_err(|_| format!("`{whole}` is not a duration like 15m"))?;
            let unit = &rest[number_end..unit_end];
            seconds += number
                * match unit {
                    "" | "s" => 1.0,
                    "ms" => 0.001,
                    "m" => 60.0,
                    "h" => 3600.0,
                    "d" => 86_400.0,
                    _ => {
                        return Err(format!(
                            "unknown unit `{unit}` in `{whole}` (use ms, s, m, h or d)"
                        ))
                    }
                };
            rest = &rest[unit_end..];
        }
        if whole.is_empty() {
            return Err("an empty duration".into());
        }
        Duration::try_from_secs_f64(seconds)
            .map(Self)
            .map_err(|e| format!("`{whole}`: {e}"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let s = self.0.as_secs();
        let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let mut out = String::new();
        for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
            if n > 0 {
                let _ = write!(out, "{n}{unit}");
            }
        }
        if s > 0 || out.is_empty() {
            let _ = write!(out, "{s}s");
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, String> {
        text.parse::<HumanDuration>().map(|d| d.0)
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("900"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse("soon").is_err());
        assert!(parse("5y").is_err());
    }

    #[test]
    fn durations_print_as_they_are_written() {
        let shown = |d: Duration| HumanDuration(d).to_string();
        assert_eq!(shown(Duration::from_secs(900)), "15m");
        assert_eq!(shown(Duration::from_secs(5400)), "1h30m");
        assert_eq!(shown(Duration::from_secs(1)), "1s");
        assert_eq!(shown(Duration::from_millis(250)), "250ms");
        assert_eq!(shown(Duration::from_secs(30 * 86_400)), "30d");
        for text in ["15m", "1h30m", "30d", "250ms", "10s"] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().to_string(), text);
        }
    }
}
