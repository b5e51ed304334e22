//! Series taken from a Prometheus text exposition (a saved `/metrics`
//! page, e.g. node_exporter's) for `oxeye loadgen --series-from FILE`:
//! history with the real names and labels, so that dashboards written for
//! that exporter can be measured over it. Counters (and histogram and
//! summary `_bucket`/`_sum`/`_count` series) grow from their scraped value
//! at a rate of a day's share of it per second, so that rates are positive
//! and cumulative buckets stay ordered; gauges swing ±10 % around theirs.

/// One series of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSeries {
    /// `__name__` first, then the labels as written, then the extra ones.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub counter: bool,
}

impl TemplateSeries {
    /// The value `seconds` after the scrape, for series number `id`.
    pub fn value_at(&self, id: u64, seconds: f64) -> f64 {
        if self.counter {
            self.value + seconds * (self.value.abs() / 86_400.0).max(0.01)
        } else {
            let phase = (id % 997) as f64;
            self.value * (1.0 + 0.1 * (seconds / 900.0 + phase).sin())
        }
    }
}

/// Parses the text format (0.0.4). Lines that are not samples, and
/// samples whose value is not finite, are skipped. `extra` labels (e.g.
/// `job` and `instance`, which a scraper adds) replace the same names.
pub fn parse(text: &str, extra: &[(String, String)]) -> Result<Vec<TemplateSeries>, String> {
    let mut counters = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                if matches!(kind, "counter" | "histogram" | "summary") {
                    counters.insert(name.to_owned());
                }
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = sample(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        else {
            continue;
        };
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        let counter = counters.contains(&name) || counters.contains(family);
        let mut all = vec![("__name__".to_owned(), name.clone())];
        all.extend(
            labels
                .into_iter()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)),
        );
        all.extend(extra.iter().cloned());
        out.push(TemplateSeries {
            labels: all,
            value,
            counter: counter && !name.ends_with("_created"),
        });
    }
    if out.is_empty() {
        return Err("no samples in the exposition".into());
    }
    Ok(out)
}

type Sample = (String, Vec<(String, String)>, String);

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample without a value")?;
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            // Skip separators.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                end = start + 1;
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = body[start..key_end].trim().to_owned();
            chars.next(); // =
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: the value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated label value".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.push((key, value));
        }
        rest = &body[end..];
    }
    Ok((name, labels, rest.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_exporter_lines() {
        let text =
            "# HELP node_cpu_seconds_total Seconds.\n# TYPE node_cpu_seconds_total counter\n\
            node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1234.5\n\
            # TYPE node_load1 gauge\nnode_load1 0.25\n\
            # TYPE x histogram\nx_bucket{le=\"+Inf\"} 4\nx_sum 2.5\nx_count 4\n\
            node_uname_info{nodename=\"vm\",release=\"6.1 \\\"x\\\"\"} 1\nnode_bad NaN\n";
        let extra = [("job".to_owned(), "node".to_owned())];
        let series = parse(text, &extra).unwrap();
        assert_eq!(series.len(), 6);
        assert_eq!(
            series[0].labels,
            vec![
                ("__name__".into(), "node_cpu_seconds_total".into()),
                ("cpu".into(), "0".into()),
                ("mode".into(), "idle".into()),
                ("job".into(), "node".into())
            ]
        );
        assert!(series[0].counter && !series[1].counter && series[2].counter && series[4].counter);
        assert_eq!(series[5].labels[2], ("release".into(), "6.1 \"x\"".into()));
        assert!(series[0].value_at(0, 60.0) > series[0].value_at(0, 0.0));
        assert!(parse("# nothing\n", &[]).is_err());
        assert!(parse("a{b=c} 1\n", &[]).is_err());
    }
}
