//! The timeline picture: one row per node, coloured by how its view of the cluster compared
//! with the truth, with the partitions (their sides named) and the run's events marked.

use super::svg::{Scale, Svg};
use crate::report::TimelineEntry;
use crate::views::{side_name, slot_list, PartitionSpan, ViewSpan, ViewState, Views};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
/// Height of one line of partition captions above the rows.
const CAPTION: f64 = 16.0;
/// Events marked with a numbered line; the list under the picture names them all.
const MARKERS_MAX: usize = 80;

/// Every state, with its class and what the legend says about it.
pub const STATES: [(ViewState, &str, &str); 5] = [
    (ViewState::Agrees, "agrees", "sees exactly the live nodes"),
    (ViewState::Suspects, "suspects", "sees them, suspects some"),
    (
        ViewState::Differs,
        "differs",
        "misses a live node or lists a dead one",
    ),
    (ViewState::Stalled, "stalled", "stalled"),
    (ViewState::Down, "down", "down"),
];

fn class_of(state: ViewState) -> &'static str {
    STATES
        .iter()
        .find(|(s, ..)| *s == state)
        .map_or("down", |(_, class, _)| class)
}

/// The picture of `views` over `0..end_secs`, with `events` marked.
pub fn picture(views: &Views, events: &[TimelineEntry], end_secs: f64) -> String {
    let nodes = views.nodes.len().max(1);
    let row = (420.0 / nodes as f64).clamp(3.0, 14.0);
    let top = 18.0 + CAPTION * views.partitions.len() as f64;
    let rows_bottom = top + row * nodes as f64;
    let height = rows_bottom + 36.0;
    let x = Scale::new((0.0, end_secs.max(1e-3)), (LEFT, WIDTH - RIGHT));
    let mut svg = Svg::new(WIDTH, height, "each node's view of the cluster over time");
    for (i, p) in views.partitions.iter().enumerate() {
        caption(&mut svg, x, 14.0 + CAPTION * (i + 1) as f64, i, p);
    }
    for (slot, spans) in views.nodes.iter().enumerate() {
        let y = top + row * slot as f64;
        if row >= 7.0 || slot % 5 == 0 {
            svg.text(
                (LEFT - 6.0, y + row * 0.8),
                "end",
                "label",
                &format!("n{slot}"),
            );
        }
        for span in spans {
            node_span(&mut svg, x, (y, row), slot, span);
        }
    }
    for (i, p) in views.partitions.iter().enumerate() {
        partition_band(&mut svg, x, (top, row), i, p);
    }
    let mut last_label = f64::NEG_INFINITY;
    for (i, event) in events.iter().take(MARKERS_MAX).enumerate() {
        let at = x.at(event.at_secs);
        let what = format!("{}. {:.3}s {}", i + 1, event.at_secs, event.what);
        svg.line((at, 10.0), (at, rows_bottom), "event", &what);
        // Numbers of events close together would overlap: those are left to the list.
        if at - last_label >= 14.0 {
            svg.text((at, 9.0), "middle", "tick", &(i + 1).to_string());
            last_label = at;
        }
    }
    svg.x_axis(x, rows_bottom + 2.0, "simulated seconds");
    svg.finish()
}

/// The caption line of partition `index`: when, and which nodes were on each side.
fn caption(svg: &mut Svg, x: Scale, y: f64, index: usize, p: &PartitionSpan) {
    let sides: Vec<String> = p
        .sides
        .iter()
        .enumerate()
        .map(|(i, side)| format!("{} = {}", side_name(i), slot_list(side)))
        .collect();
    // A one-way cut also says which way traffic stopped.
    let cuts: Vec<String> = p
        .cuts
        .iter()
        .filter(|_| p.one_way)
        .map(|(from, to)| format!(" · {} cannot send to {}", slot_list(from), slot_list(to)))
        .collect();
    let text = format!(
        "partition {} ({:.1}s–{:.1}s{}): {}{}",
        index + 1,
        p.from_secs,
        p.to_secs,
        if p.one_way { ", one way" } else { "" },
        sides.join(" · "),
        cuts.concat()
    );
    svg.text(
        (x.at(p.from_secs).min(WIDTH / 2.0), y),
        "start",
        "caption",
        &text,
    );
}

fn node_span(svg: &mut Svg, x: Scale, (y, row): (f64, f64), slot: usize, span: &ViewSpan) {
    let (from, to) = (x.at(span.from_secs), x.at(span.to_secs));
    let title = match span.state {
        ViewState::Down => format!("n{slot} {:.1}s–{:.1}s: down", span.from_secs, span.to_secs),
        _ => format!(
            "n{slot} {:.1}s–{:.1}s: sees {} alive (itself included), {} suspected, {} failed or left; {} nodes up",
            span.from_secs, span.to_secs, span.alive, span.suspects, span.gone, span.live
        ),
    };
    // A span sampled once still gets a visible sliver.
    svg.rect(
        from,
        y,
        (to - from).max(1.0),
        row * 0.9,
        class_of(span.state),
        &title,
    );
}

/// The band of partition `index` over the rows, each row marked with its side.
fn partition_band(
    svg: &mut Svg,
    x: Scale,
    (top, row): (f64, f64),
    index: usize,
    p: &PartitionSpan,
) {
    let (from, to) = (x.at(p.from_secs), x.at(p.to_secs));
    let nodes = p.sides.iter().map(Vec::len).sum::<usize>();
    let title = format!(
        "partition {} from {:.1}s to {:.1}s",
        index + 1,
        p.from_secs,
        p.to_secs
    );
    svg.rect(
        from,
        top,
        to - from,
        row * nodes as f64,
        "partition",
        &title,
    );
    for (i, side) in p.sides.iter().enumerate() {
        let class = format!("side side{}", i % 4);
        let name = side_name(i);
        let title = format!("side {name}: {}", slot_list(side));
        // A badge wide enough for the side's name where rows are tall enough, a strip otherwise.
        let badge = if row >= 9.0 { 12.0 } else { 4.0 };
        for &slot in side {
            let y = top + row * slot as f64;
            svg.rect(from, y, badge, row * 0.9, &class, &title);
            if row >= 9.0 {
                svg.text(
                    (from + badge / 2.0, y + row * 0.72),
                    "middle",
                    "sidename",
                    &name,
                );
            }
        }
    }
}
