//! Reading the Prometheus/OpenMetrics text that `/metrics` serves.

/// Sums every sample of a metric family.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One sample of a metric with exactly these labels (as written), if any.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l.as_bytes().get(series.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_family_and_found_by_series() {
        let text = "# TYPE a counter\na_total{x=\"1\"} 2\na_total{x=\"2\"} 3.5\nab_total 7\n";
        assert_eq!(metric_sum(text, "a_total"), 5.5);
        assert_eq!(metric_value(text, "a_total{x=\"2\"}"), Some(3.5));
        assert_eq!(metric_value(text, "a_total"), None);
        assert_eq!(metric_sum(text, "ab_total"), 7.0);
    }
}
