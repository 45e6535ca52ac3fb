//! `/status`: a small self-contained HTML page showing health and every JSON route's content,
//! readable in a browser with no scripts.

use std::fmt::Write;

use serde_json::Value;

use super::health::Health;

/// The page for `health`, the JSON `routes` (path and current content) and whether metrics exist.
pub(crate) fn render(health: &Health, routes: &[(&str, Value)], has_metrics: bool) -> String {
    let mut page = String::from(HEAD);
    let verdict = if health.healthy {
        "healthy"
    } else {
        "unhealthy"
    };
    // Writing into a String cannot fail.
    let _ = write!(
        page,
        "<h1>Foundation node</h1>\n<p class=\"{verdict}\"><a href=\"/health\">health</a>: {verdict} — {}</p>\n",
        escape(&health.status)
    );
    if has_metrics {
        page.push_str("<p><a href=\"/metrics\">/metrics</a> (OpenMetrics)</p>\n");
    }
    for (path, value) in routes {
        let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
        let path = escape(path);
        let _ = write!(
            page,
            "<h2><a href=\"{path}\">{path}</a></h2>\n<pre>{}</pre>\n",
            escape(&pretty)
        );
    }
    page.push_str("</body>\n</html>\n");
    page
}

const HEAD: &str = "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
<title>Foundation node status</title>\n<style>\n\
body { font-family: sans-serif; margin: 2em; }\n\
pre { background: #f4f4f4; padding: 1em; overflow: auto; }\n\
.healthy { color: #176b2c; } .unhealthy { color: #a01616; }\n\
</style>\n</head>\n<body>\n";

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_escaped() {
        let page = render(
            &Health::unhealthy("<b>alone</b>"),
            &[("/members", Value::from("<script>"))],
            true,
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;b&gt;alone"));
        assert!(page.contains("href=\"/members\""));
    }
}
