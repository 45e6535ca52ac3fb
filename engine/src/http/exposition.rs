//! The two text formats `/metrics` speaks, and which one a scraper gets.
//!
//! `prometheus_client` writes OpenMetrics 1.0. Prometheus asks for it, but many tools (the
//! classic Python and Go parsers, `promtool check metrics`, older agents) read only the
//! Prometheus text format 0.0.4, and read a counter whose TYPE line lacks `_total` as untyped.
//! So, as Prometheus's own client libraries do, a scraper that does not ask for OpenMetrics in
//! `Accept` gets the classic format, translated here line by line.

/// The content type of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format 0.0.4.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (with a non-zero quality).
pub(crate) fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0" || p == "q=0.0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// OpenMetrics text as the classic format: no `# EOF` or `# UNIT`, counters and infos named as
/// their samples are, types the classic format lacks mapped to the nearest it has, exemplars
/// dropped.
pub(crate) fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, but only TYPE says how the family's name must change.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = classic_family(name, kind);
            if let Some(text) = help.take() {
                let text = text.split_once(' ').map_or("", |(_, text)| text);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF` have no classic counterpart.
        } else if !line.is_empty() {
            out.push_str(without_exemplar(line));
            out.push('\n');
        }
    }
    out
}

/// A family's classic name and type.
fn classic_family(name: &str, kind: &str) -> (String, &'static str) {
    match kind {
        "counter" => (format!("{name}_total"), "counter"),
        "info" => (format!("{name}_info"), "gauge"),
        "gauge" => (name.to_owned(), "gauge"),
        "histogram" | "gaugehistogram" => (name.to_owned(), "histogram"),
        "summary" => (name.to_owned(), "summary"),
        "stateset" => (name.to_owned(), "gauge"),
        _ => (name.to_owned(), "untyped"),
    }
}

/// A sample line without its exemplar (` # {labels} value`), which the classic format lacks.
/// The exemplar is looked for only after the label set: a label value (a service name, say)
/// may hold ` # ` itself.
fn without_exemplar(line: &str) -> &str {
    let labels_end = label_set_end(line);
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

/// Where a sample line's label set ends (just past its `}`), or where its name ends when it
/// has none. Quoted values are skipped with their escapes (`\"`, `\\`), so a `}` or `"` in a
/// value does not end the set.
fn label_set_end(line: &str) -> usize {
    let Some(open) = line.find(['{', ' ']) else {
        return line.len();
    };
    if !line[open..].starts_with('{') {
        return open;
    }
    let (mut quoted, mut escaped) = (false, false);
    for (at, byte) in line.bytes().enumerate().skip(open + 1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return at + 1,
            _ => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "\
# HELP foundation_rpc_calls Calls by outcome.
# TYPE foundation_rpc_calls counter
foundation_rpc_calls_total{outcome=\"ok\"} 3
# HELP foundation_build Build.
# TYPE foundation_build info
foundation_build_info{version=\"0.1.0\"} 1
# HELP foundation_rtt_seconds Round trips.
# TYPE foundation_rtt_seconds histogram
# UNIT foundation_rtt_seconds seconds
foundation_rtt_seconds_bucket{le=\"0.1\"} 2 # {trace=\"ab\"} 0.05
foundation_rtt_seconds_sum 0.1
foundation_rtt_seconds_count 2
# HELP foundation_members Members by state.
# TYPE foundation_members gauge
# EOF
";

    #[test]
    fn openmetrics_becomes_the_classic_format() {
        let classic = to_classic(OPENMETRICS);
        let expected = "\
# HELP foundation_rpc_calls_total Calls by outcome.
# TYPE foundation_rpc_calls_total counter
foundation_rpc_calls_total{outcome=\"ok\"} 3
# HELP foundation_build_info Build.
# TYPE foundation_build_info gauge
foundation_build_info{version=\"0.1.0\"} 1
# HELP foundation_rtt_seconds Round trips.
# TYPE foundation_rtt_seconds histogram
foundation_rtt_seconds_bucket{le=\"0.1\"} 2
foundation_rtt_seconds_sum 0.1
foundation_rtt_seconds_count 2
# HELP foundation_members Members by state.
# TYPE foundation_members gauge
";
        assert_eq!(classic, expected);
    }

    /// A label value may hold what marks an exemplar (` # `), braces and escaped quotes: the
    /// sample keeps its whole label set and value, and only a real exemplar is dropped.
    #[test]
    fn a_label_value_holding_an_exemplar_mark_is_kept_whole() {
        let sample = r#"foundation_rpc_calls_total{service="a # b} \" # {c}",outcome="ok"} 3"#;
        let openmetrics = format!(
            "# HELP foundation_rpc_calls Calls.\n# TYPE foundation_rpc_calls counter\n{sample}\n{sample} # {{trace=\"x\"}} 1\n# EOF\n"
        );
        let classic = to_classic(&openmetrics);
        let samples: Vec<&str> = classic.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples, [sample, sample], "{classic}");
    }

    #[test]
    fn only_an_explicit_request_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; q=0"
        )));
        assert!(!wants_openmetrics(None));
    }
}
