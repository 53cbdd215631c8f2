//! Reading Prometheus text exposition in tests.

/// The value of the first sample of `name` whose labels include every
/// `(label, value)` pair, from text exposition.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_values(text, name, labels).into_iter().next()
}

/// Every value of `name` whose labels include every pair.
pub fn metric_values(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            if !labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            {
                return None;
            }
            value.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_by_name_and_labels() {
        let text = "# TYPE a gauge\na{x=\"1\",y=\"2\"} 3\na{x=\"2\"} 4\nab 5\nb 6.5\n";
        assert_eq!(metric_value(text, "a", &[("x", "2")]), Some(4.0));
        assert_eq!(metric_value(text, "a", &[("y", "2")]), Some(3.0));
        assert_eq!(metric_value(text, "b", &[]), Some(6.5));
        assert_eq!(metric_values(text, "a", &[]), vec![3.0, 4.0]);
        assert_eq!(metric_value(text, "c", &[]), None);
    }
}
