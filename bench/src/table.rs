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
