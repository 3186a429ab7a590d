//! The one table the suite prints (Markdown, so BENCHMARKS.md can hold it
//! verbatim).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// A figure with no goal of its own.
    Info,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT MET",
            Verdict::Info => "",
        }
    }
}

pub struct Row {
    pub number: &'static str,
    pub benchmark: String,
    pub figure: String,
    pub baseline: String,
    pub goal: String,
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(
        &mut self,
        number: &'static str,
        benchmark: impl Into<String>,
        figure: impl Into<String>,
        baseline: impl Into<String>,
        goal: impl Into<String>,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            number,
            benchmark: benchmark.into(),
            figure: figure.into(),
            baseline: baseline.into(),
            goal: goal.into(),
            verdict,
        });
    }

    pub fn render(&self) -> String {
        let header = [
            "#",
            "benchmark",
            "figure",
            "baseline",
            "ratio / goal",
            "met",
        ];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.number.to_owned(),
                    r.benchmark.clone(),
                    r.figure.clone(),
                    r.baseline.clone(),
                    r.goal.clone(),
                    r.verdict.text().to_owned(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |items: &[String]| -> String {
            let padded: Vec<String> = items
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(&header.map(str::to_owned));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for row in &cells {
            out.push_str(&line(row));
        }
        out
    }
}

/// The median of repeated measurements and their range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Of at least one value (the median of an even count is the mean of
    /// the middle two).
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                n,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    /// `3.21 ms (2.90 – 4.10)`; a single value alone.
    pub fn describe(&self, unit: &str) -> String {
        let f = |x: f64| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        };
        if self.n <= 1 {
            format!("{}{unit}", f(self.median))
        } else {
            format!(
                "{}{unit} ({} – {})",
                f(self.median),
                f(self.min),
                f(self.max)
            )
        }
    }

    /// `12,345 req/s (11,000 – 13,000)`.
    pub fn describe_thousands(&self, unit: &str) -> String {
        if self.n <= 1 {
            format!("{}{unit}", thousands(self.median))
        } else {
            format!(
                "{}{unit} ({} – {})",
                thousands(self.median),
                thousands(self.min),
                thousands(self.max)
            )
        }
    }
}

/// 12345.6 -> "12,346".
pub fn thousands(n: f64) -> String {
    let rounded = n.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(millis(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(millis(Duration::from_millis(25)), "25.0 ms");
    }

    #[test]
    fn a_spread_is_the_median_and_the_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0, 4.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 10.0, 5));
        assert_eq!(s.describe(" ms"), "3.00 ms (1.00 – 10.0)");
        assert_eq!(Spread::of(&[1.0, 2.0]).median, 1.5);
        assert_eq!(
            Spread::of(&[1234.0]).describe_thousands(" req/s"),
            "1,234 req/s"
        );
    }

    #[test]
    fn the_table_is_aligned_markdown() {
        let mut t = Table::default();
        t.add(
            "1",
            "ingest",
            "10 events/s",
            "20 events/s",
            "0.50 (≥ 0.8)",
            Verdict::NotMet,
        );
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("| -"));
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }
}
