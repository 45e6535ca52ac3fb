//! `foundation sim … --html report.html`: one self-contained page (inline SVG and CSS, no
//! script, nothing fetched) with pictures of a run or of a sweep over seeds.
//!
//! - **Each node's view of the cluster** over time, one row per node (of the pictured run: the
//!   single run, or for a sweep the first failed seed, else the first seed), coloured by how
//!   its list of alive members compared with the nodes really up; partitions are shaded with
//!   their sides named (A, B, …) in a caption and on each row; the run's events are numbered
//!   lines, listed under the picture.
//! - **Detection and convergence**: histograms of the time until every survivor saw a crash
//!   (and until the first did), of the time until every live node agreed after a disturbance,
//!   and (for scenarios that write) until replicas held the same data — over every crash and
//!   episode of every seed of a sweep.
//! - **Bytes per node over time** (the pictured run), and for a sweep the distribution of each
//!   seed's membership bytes per node per second, and each seed's slowest convergence and
//!   detection as dots over the seeds (failed seeds shaded).

mod charts;
mod svg;
mod timeline;

use std::fmt::Write;

use crate::report::RunReport;
use crate::scenario::sessions::SessionCounts;
use svg::esc;

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
svg { display: block; margin: 8px 0; background: #fff; }
.charts { display: flex; flex-wrap: wrap; gap: 8px; }
text { font: 11px system-ui, sans-serif; fill: #333; }
text.caption { font-size: 12px; fill: #111; } text.sidename { fill: #fff; font-weight: bold; font-size: 9px; }
.axis { stroke: #555; } .grid { stroke: #eee; }
.agrees { fill: #3a9d5d; } .suspects { fill: #e0a526; } .differs { fill: #d1495b; }
.stalled { fill: #8e7cc3; } .down { fill: #cfcfcf; }
.partition { fill: #1f3a93; fill-opacity: 0.08; stroke: #1f3a93; stroke-dasharray: 4 3; }
.side0 { fill: #1f3a93; } .side1 { fill: #b5179e; } .side2 { fill: #f77f00; } .side3 { fill: #2a9d8f; }
.event { stroke: #000; stroke-opacity: 0.35; stroke-width: 1; }
.bar { fill: #4a78b5; } .median { stroke: #111; stroke-width: 2; } .p99 { stroke: #d1495b; stroke-width: 2; stroke-dasharray: 5 3; }
.node { fill: none; stroke: #4a78b5; stroke-opacity: 0.35; stroke-width: 1; }
.median-line { fill: none; stroke: #111; stroke-width: 2; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: -1px; }
.converge-dot { fill: #4a78b5; } .detect-dot { fill: #d1495b; } .failed-seed { fill: #d1495b; fill-opacity: 0.15; }
.failed { color: #b00020; } code { background: #f3f3f3; padding: 0 3px; }
";

/// The page for `runs` (every seed, sorted), picturing `pictured`'s views when it has them.
pub fn page(runs: &[RunReport], pictured: Option<&RunReport>) -> String {
    let mut body = String::new();
    summary(&mut body, runs);
    if let Some(run) = pictured {
        views_section(&mut body, run);
    }
    distributions_section(&mut body, runs);
    if let Some((run, views)) = pictured.and_then(|r| r.views.as_ref().map(|v| (r, v))) {
        let _ = write!(
            body,
            "<section id=\"bytes\"><h2>Bytes per node over time (seed {})</h2>\
             <p>Membership datagrams and stream messages on every channel each node sent, per \
             second; one thin line per node, the thick line is their median.</p>{}</section>",
            run.seed,
            charts::bytes_over_time(&views.bytes, &views.partitions, run.simulated_secs)
        );
    }
    let title = runs.first().map_or("simulation", |r| r.scenario.as_str());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <title>foundation sim: {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

fn summary(out: &mut String, runs: &[RunReport]) {
    let Some(first) = runs.first() else {
        out.push_str("<h1>No runs</h1>");
        return;
    };
    let failed: Vec<&RunReport> = runs.iter().filter(|r| !r.passed).collect();
    let seeds = match runs {
        [one] => format!("seed {}", one.seed),
        _ => format!(
            "{} seeds ({}–{})",
            runs.len(),
            first.seed,
            runs.last().map_or(first.seed, |r| r.seed)
        ),
    };
    let _ = write!(
        out,
        "<h1>Scenario {} · {} nodes · {seeds}</h1><p id=\"verdict\">{} passed, \
         <span class=\"failed\">{} failed</span> · {:.1} simulated seconds per run</p>",
        esc(&first.scenario),
        first.nodes,
        runs.len() - failed.len(),
        failed.len(),
        first.simulated_secs
    );
    let sessions = crate::report::summed(runs, |m| m.sessions.as_ref(), SessionCounts::add);
    if let Some(sessions) = sessions {
        let _ = write!(out, "<p id=\"sessions\">{}</p>", esc(&sessions.to_string()));
    }
    if !failed.is_empty() {
        out.push_str("<ul class=\"failed\">");
        for run in failed.iter().take(20) {
            let _ = write!(
                out,
                "<li>seed {}: replay with <code>{}</code></li>",
                run.seed,
                esc(&run.replay)
            );
        }
        out.push_str("</ul>");
    }
}

fn views_section(out: &mut String, run: &RunReport) {
    let Some(views) = &run.views else { return };
    let _ = write!(
        out,
        "<section id=\"timeline\"><h2>Each node's view of the cluster (seed {})</h2>\
         <p>One row per node. The colour says how the members it listed as alive compared with \
         the nodes really up at that moment (hover for the counts). Shaded bands are \
         partitions: the caption names the nodes on each side, and each row is marked with its \
         side. Numbered lines are the events listed below.</p><p class=\"legend\">",
        run.seed
    );
    for (_, class, meaning) in timeline::STATES {
        let _ = write!(out, "<span class=\"{class}\"></span>{}", esc(meaning));
    }
    out.push_str("</p>");
    out.push_str(&timeline::picture(views, &run.timeline, run.simulated_secs));
    out.push_str("<ol class=\"events\">");
    for event in &run.timeline {
        let _ = write!(out, "<li>{:.3}s {}</li>", event.at_secs, esc(&event.what));
    }
    out.push_str("</ol></section>");
}

fn distributions_section(out: &mut String, runs: &[RunReport]) {
    let over = if runs.len() > 1 {
        format!("over {} seeds", runs.len())
    } else {
        "in this run".to_string()
    };
    let detections = || runs.iter().flat_map(|r| &r.measurements.detections);
    let all: Vec<f64> = detections().filter_map(|d| d.all_secs).collect();
    let first: Vec<f64> = detections().filter_map(|d| d.first_secs).collect();
    let convergence: Vec<f64> = runs
        .iter()
        .flat_map(|r| &r.measurements.convergence)
        .filter_map(|c| c.took_secs)
        .collect();
    let _ = write!(
        out,
        "<section id=\"distributions\"><h2>Detection and convergence ({over})</h2>\
         <p>Time from a crash or stop until every survivor marked the node failed or left, and \
         until the first did; time from a disturbance (heal, crash, restart, stop, stall, join) \
         until every live node listed exactly the live nodes. Black: median; red dashes: 99th \
         percentile.</p><div class=\"charts\">{}{}{}",
        charts::histogram(
            "crash or stop seen by every survivor",
            "seconds",
            &all,
            true
        ),
        charts::histogram(
            "crash or stop seen by the first survivor",
            "seconds",
            &first,
            true
        ),
        charts::histogram(
            "cluster converged after a disturbance",
            "seconds",
            &convergence,
            true
        ),
    );
    let replicas: Vec<f64> = runs
        .iter()
        .flat_map(|r| &r.measurements.replication)
        .filter_map(|e| e.took_secs)
        .collect();
    if !replicas.is_empty() {
        out.push_str(&charts::histogram(
            "replicas held the same data after a disturbance",
            "seconds",
            &replicas,
            true,
        ));
    }
    if runs.len() > 1 {
        out.push_str(&charts::per_seed(runs));
        let bytes: Vec<f64> = runs
            .iter()
            .map(|r| r.traffic.membership_bytes_per_node_per_sec)
            .collect();
        out.push_str(&charts::histogram(
            "membership bytes per node per second, one sample per seed",
            "B/s",
            &bytes,
            false,
        ));
    }
    out.push_str("</div></section>");
}
