//! Histograms of measured times and the bytes-per-node-over-time chart.

use super::svg::{short, ticks, Scale, Svg};
use crate::report::{RunReport, Stats};
use crate::views::{BytesSample, PartitionSpan};

const WIDTH: f64 = 460.0;
const HEIGHT: f64 = 210.0;
const LEFT: f64 = 52.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 40.0;

/// A histogram of `samples` in `unit`, with the median and the 99th percentile marked; the axis
/// starts at zero when `from_zero`.
pub fn histogram(title: &str, unit: &str, samples: &[f64], from_zero: bool) -> String {
    let mut svg = Svg::new(WIDTH, HEIGHT, title);
    svg.text((WIDTH / 2.0, 14.0), "middle", "caption", title);
    if samples.is_empty() {
        svg.text((WIDTH / 2.0, HEIGHT / 2.0), "middle", "label", "no samples");
        return svg.finish();
    }
    let stats = Stats::of(samples.to_vec());
    let (low, high) = range(samples, from_zero);
    let bins = bins(samples, low, high);
    let most = bins.iter().map(|(_, _, n)| *n).max().unwrap_or(1).max(1);
    let x = Scale::new((low, high), (LEFT, WIDTH - 12.0));
    let y = Scale::new((0.0, most as f64), (HEIGHT - BOTTOM, TOP + 8.0));
    svg.y_axis(y, LEFT, WIDTH - 12.0, "count");
    for (from, to, count) in &bins {
        let (left, right) = (x.at(*from), x.at(*to));
        let title = format!("{count} between {} and {} {unit}", short(*from), short(*to));
        svg.rect(
            left + 0.5,
            y.at(*count as f64),
            right - left - 1.0,
            y.at(0.0) - y.at(*count as f64),
            "bar",
            &title,
        );
    }
    for (name, value) in [("median", stats.median), ("p99", stats.p99)] {
        if let Some(v) = value {
            let at = x.at(v);
            let label = format!("{name} {}", short(v));
            svg.line((at, TOP + 4.0), (at, HEIGHT - BOTTOM), name, &label);
            let y = TOP + 12.0 + if name == "p99" { 12.0 } else { 0.0 };
            // Near the right edge the label goes to the left of its line.
            if at > WIDTH - 90.0 {
                svg.text((at - 3.0, y), "end", "tick", &label);
            } else {
                svg.text((at + 3.0, y), "start", "tick", &label);
            }
        }
    }
    svg.x_axis(
        x,
        HEIGHT - BOTTOM,
        &format!("{unit} · {} samples", samples.len()),
    );
    svg.finish()
}

/// The range a histogram spans: from zero (`from_zero`, for times) or a round value under the
/// smallest sample (for rates that never come near zero), to the first round value above the
/// largest.
fn range(samples: &[f64], from_zero: bool) -> (f64, f64) {
    let max = samples.iter().copied().fold(0.0, f64::max).max(1e-3);
    let min = samples.iter().copied().fold(max, f64::min);
    let low = if from_zero { 0.0 } else { min };
    let marks = ticks(low, max, 6);
    let step = match marks.as_slice() {
        [a, b, ..] => b - a,
        _ => max.max(1.0),
    };
    let low = (low / step).floor() * step;
    (low, ((max / step).floor() + 1.0) * step)
}

/// About twenty equal bins over `low..high`, each with its count.
fn bins(samples: &[f64], low: f64, high: f64) -> Vec<(f64, f64, usize)> {
    let count = 20;
    let width = (high - low) / count as f64;
    let mut bins: Vec<(f64, f64, usize)> = (0..count)
        .map(|i| (low + width * i as f64, low + width * (i + 1) as f64, 0))
        .collect();
    for s in samples {
        let i = (((s - low) / width).floor() as usize).min(count - 1);
        bins[i].2 += 1;
    }
    bins
}

/// Bytes sent per second by each node over time (thin lines), their median (thick), with the
/// partitions shaded.
pub fn bytes_over_time(
    samples: &[BytesSample],
    partitions: &[PartitionSpan],
    end_secs: f64,
) -> String {
    let width = 960.0;
    let height = 260.0;
    let title = "bytes sent per second by each node";
    let mut svg = Svg::new(width, height, title);
    svg.text((width / 2.0, 14.0), "middle", "caption", title);
    let rates = rates(samples);
    let nodes = samples.first().map_or(0, |s| s.sent.len());
    let top = rates
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .fold(0.0, f64::max);
    let x = Scale::new((0.0, end_secs.max(1e-3)), (LEFT + 10.0, width - 16.0));
    let y = Scale::new((0.0, top.max(1.0) * 1.05), (height - BOTTOM, TOP + 8.0));
    for p in partitions {
        let title = format!("partition {:.1}s–{:.1}s", p.from_secs, p.to_secs);
        svg.rect(
            x.at(p.from_secs),
            TOP,
            x.at(p.to_secs) - x.at(p.from_secs),
            height - BOTTOM - TOP,
            "partition",
            &title,
        );
    }
    svg.y_axis(y, LEFT + 10.0, width - 16.0, "B/s");
    for slot in 0..nodes {
        let points: Vec<(f64, f64)> = rates
            .iter()
            .map(|(t, r)| (x.at(*t), y.at(r.get(slot).copied().unwrap_or(0.0))))
            .collect();
        svg.polyline(&points, "node", &format!("n{slot}"));
    }
    let median: Vec<(f64, f64)> = rates
        .iter()
        .filter_map(|(t, r)| Stats::of(r.clone()).median.map(|m| (x.at(*t), y.at(m))))
        .collect();
    svg.polyline(&median, "median-line", "median over nodes");
    svg.x_axis(x, height - BOTTOM, "simulated seconds");
    svg.finish()
}

/// One dot per seed and measure: the slowest convergence and the slowest detection of each
/// run, failed seeds shaded, so the seed to replay stands out.
pub fn per_seed(runs: &[RunReport]) -> String {
    let width = 960.0;
    let title = "slowest convergence and slowest detection of each seed";
    let mut svg = Svg::new(width, HEIGHT, title);
    svg.text((width / 2.0, 14.0), "middle", "caption", title);
    let worst = |samples: Vec<f64>| samples.into_iter().reduce(f64::max);
    let points: Vec<(u64, bool, Option<f64>, Option<f64>)> = runs
        .iter()
        .map(|r| {
            let m = &r.measurements;
            let converged = worst(m.convergence.iter().filter_map(|c| c.took_secs).collect());
            let detected = worst(m.detections.iter().filter_map(|d| d.all_secs).collect());
            (r.seed, r.passed, converged, detected)
        })
        .collect();
    let top = points
        .iter()
        .flat_map(|p| [p.2, p.3])
        .flatten()
        .fold(0.0, f64::max);
    let (first, last) = (
        runs.first().map_or(0, |r| r.seed),
        runs.last().map_or(1, |r| r.seed),
    );
    let x = Scale::new(
        (first as f64 - 0.5, last as f64 + 0.5),
        (LEFT, width - 16.0),
    );
    let y = Scale::new((0.0, top.max(0.1) * 1.1), (HEIGHT - BOTTOM, TOP + 8.0));
    svg.y_axis(y, LEFT, width - 16.0, "seconds");
    for (seed, passed, converged, detected) in points {
        let at = x.at(seed as f64);
        if !passed {
            let band = (x.at(1.0) - x.at(0.0)).max(2.0);
            let title = format!("seed {seed} failed");
            svg.rect(
                at - band / 2.0,
                TOP,
                band,
                HEIGHT - BOTTOM - TOP,
                "failed-seed",
                &title,
            );
        }
        for (value, class, what) in [
            (converged, "converge-dot", "converged"),
            (detected, "detect-dot", "crash seen by all"),
        ] {
            if let Some(v) = value {
                let title = format!("seed {seed}: {what} after {v:.2}s at worst");
                svg.circle((at, y.at(v)), 3.0, class, &title);
            }
        }
    }
    let legend = width - 330.0;
    svg.circle((legend, 26.0), 3.0, "converge-dot", "");
    svg.text((legend + 6.0, 30.0), "start", "tick", "slowest convergence");
    svg.circle((legend + 140.0, 26.0), 3.0, "detect-dot", "");
    svg.text(
        (legend + 146.0, 30.0),
        "start",
        "tick",
        "slowest crash seen by all",
    );
    svg.x_axis(x, HEIGHT - BOTTOM, "seed");
    svg.finish()
}

/// Each node's send rate between consecutive samples, at the later sample's time.
fn rates(samples: &[BytesSample]) -> Vec<(f64, Vec<f64>)> {
    samples
        .windows(2)
        .map(|pair| {
            let dt = (pair[1].at_secs - pair[0].at_secs).max(1e-6);
            let rate = pair[1]
                .sent
                .iter()
                .zip(&pair[0].sent)
                .map(|(b, a)| b.saturating_sub(*a) as f64 / dt)
                .collect();
            (pair[1].at_secs, rate)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_count_every_sample_once() {
        let samples = [0.1, 0.2, 0.2, 1.9, 2.0];
        let (low, high) = range(&samples, true);
        assert!(high >= 2.0);
        let bins = bins(&samples, low, high);
        assert_eq!(bins.iter().map(|b| b.2).sum::<usize>(), samples.len());
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let samples = [
            BytesSample {
                at_secs: 1.0,
                sent: vec![100, 0],
            },
            BytesSample {
                at_secs: 3.0,
                sent: vec![500, 20],
            },
        ];
        assert_eq!(rates(&samples), vec![(3.0, vec![200.0, 10.0])]);
    }
}
