//! A small SVG writer: shapes with optional tooltips, axes, and text escaping. The output is
//! well-formed XML (every element closed, every text escaped), so the page also reads as XHTML.

use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A linear map from data values to pixels.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    from: (f64, f64),
    to: (f64, f64),
}

impl Scale {
    /// Maps `from.0..from.1` onto `to.0..to.1` (an empty domain maps everything to `to.0`).
    pub fn new(from: (f64, f64), to: (f64, f64)) -> Self {
        Self { from, to }
    }

    /// The pixel of `value`.
    pub fn at(&self, value: f64) -> f64 {
        let span = self.from.1 - self.from.0;
        if span.abs() < f64::EPSILON {
            return self.to.0;
        }
        self.to.0 + (value - self.from.0) / span * (self.to.1 - self.to.0)
    }

    /// The data range.
    pub fn domain(&self) -> (f64, f64) {
        self.from
    }
}

/// About `count` round tick values from `low` to `high` (steps of 1, 2 or 5 times a power of ten).
pub fn ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    let span = high - low;
    if !(span.is_finite() && span > 0.0) {
        return vec![low];
    }
    let rough = span / count.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * power);
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A number for an axis label: no needless decimals, thousands as k, millions as M.
pub fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if magnitude >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// One SVG picture being written.
pub struct Svg {
    body: String,
    width: f64,
    height: f64,
    label: String,
}

impl Svg {
    /// A picture of this size, described by `label` for screen readers.
    pub fn new(width: f64, height: f64, label: &str) -> Self {
        Self {
            body: String::new(),
            width,
            height,
            label: label.into(),
        }
    }

    /// A rectangle in `class`, with a tooltip when `title` is not empty.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, class: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" class="{class}""#,
            w.max(0.0),
            h.max(0.0)
        );
        self.close("rect", title);
    }

    /// A straight line in `class`.
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), class: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" class="{class}""#
        );
        self.close("line", title);
    }

    /// A line through `points` in `class`.
    pub fn polyline(&mut self, points: &[(f64, f64)], class: &str, title: &str) {
        let mut list = String::new();
        for (x, y) in points {
            let _ = write!(list, "{x:.1},{y:.1} ");
        }
        let _ = write!(
            self.body,
            r#"<polyline points="{}" class="{class}""#,
            list.trim_end()
        );
        self.close("polyline", title);
    }

    /// A dot of radius `r` in `class`, with a tooltip when `title` is not empty.
    pub fn circle(&mut self, (x, y): (f64, f64), r: f64, class: &str, title: &str) {
        let _ = write!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" class="{class}""#
        );
        self.close("circle", title);
    }

    /// Text at `(x, y)`; `anchor` is start, middle or end.
    pub fn text(&mut self, (x, y): (f64, f64), anchor: &str, class: &str, text: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" class="{class}">{}</text>"#,
            esc(text)
        );
    }

    /// A horizontal axis at `y` with ticks over `scale`, labelled `unit`.
    pub fn x_axis(&mut self, scale: Scale, y: f64, unit: &str) {
        let (low, high) = scale.domain();
        let (left, right) = (scale.at(low), scale.at(high));
        self.line((left, y), (right, y), "axis", "");
        for t in ticks(low, high, 8) {
            let x = scale.at(t);
            self.line((x, y), (x, y + 4.0), "axis", "");
            self.text((x, y + 15.0), "middle", "tick", &short(t));
        }
        self.text((right, y + 28.0), "end", "tick", unit);
    }

    /// A vertical axis at `x` with ticks and grid lines across to `right`, labelled `unit`.
    pub fn y_axis(&mut self, scale: Scale, x: f64, right: f64, unit: &str) {
        let (low, high) = scale.domain();
        self.line((x, scale.at(low)), (x, scale.at(high)), "axis", "");
        for t in ticks(low, high, 5) {
            let y = scale.at(t);
            self.line((x, y), (right, y), "grid", "");
            self.text((x - 4.0, y + 4.0), "end", "tick", &short(t));
        }
        self.text((x, scale.at(high) - 8.0), "start", "tick", unit);
    }

    /// The finished `<svg>` element.
    pub fn finish(self) -> String {
        format!(
            r#"<svg width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="{label}">{body}</svg>"#,
            w = self.width,
            h = self.height,
            label = esc(&self.label),
            body = self.body
        )
    }

    /// Ends the `tag` element just opened: empty, or holding its tooltip.
    fn close(&mut self, tag: &str, title: &str) {
        if title.is_empty() {
            self.body.push_str("/>");
        } else {
            let _ = write!(self.body, "><title>{}</title></{tag}>", esc(title));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let fine = ticks(0.3, 0.9, 3);
        assert_eq!(fine.len(), 3, "{fine:?}");
        assert!((fine[0] - 0.4).abs() < 1e-9 && (fine[2] - 0.8).abs() < 1e-9);
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0]);
        assert_eq!(short(12_500.0), "12k");
        assert_eq!(short(0.25), "0.25");
    }

    #[test]
    fn shapes_with_tooltips_are_closed_and_escaped() {
        let mut svg = Svg::new(10.0, 10.0, "a <test>");
        svg.rect(0.0, 0.0, 5.0, 5.0, "ok", "n1 & n2");
        svg.line((0.0, 0.0), (1.0, 1.0), "axis", "");
        let out = svg.finish();
        assert!(out.contains("<title>n1 &amp; n2</title></rect>"), "{out}");
        assert!(out.contains(r#"class="axis"/>"#), "{out}");
        assert!(out.contains(r#"aria-label="a &lt;test&gt;""#), "{out}");
    }
}
