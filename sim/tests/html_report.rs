//! `foundation sim --html`: the page is written, is well-formed, fetches nothing, and shows
//! what a known scenario did (its partition's sides by name, every node's row, a crash's
//! detection, the bytes chart); a sweep adds the distribution over seeds.

use std::path::PathBuf;

use foundation_sim::cli::{self, SeedRange, SimArgs};

/// Six nodes: n0–n2 cut off from n3–n5 from 8 s to 16 s, then n4 crashes at 24 s.
const SCENARIO: &str = r#"
name = "html-known"
nodes = 6
duration = "40s"

[groups]
west = [0, 1, 2]
east = [3, 4, 5]

[[at]]
time = "8s"
partition = ["west", "east"]

[[at]]
time = "16s"
heal = true

[[at]]
time = "24s"
crash = 4
"#;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("foundation-html-{}-{name}", std::process::id()))
}

/// Writes the scenario, runs `seeds` with `--html`, and returns the page.
fn page_of(seeds: Option<SeedRange>, tag: &str) -> String {
    let scenario = temp(&format!("{tag}.toml"));
    let html = temp(&format!("{tag}.html"));
    std::fs::write(&scenario, SCENARIO).unwrap();
    let report = cli::run(SimArgs {
        file: Some(scenario.clone()),
        seed: Some(5),
        seeds,
        html: Some(html.clone()),
        ..SimArgs::default()
    })
    .expect("the scenario passes");
    assert!(report.passed());
    let page = std::fs::read_to_string(&html).expect("the page was written");
    let _ = std::fs::remove_file(&scenario);
    let _ = std::fs::remove_file(&html);
    page
}

/// Checks that every element is closed in order (the page is written as well-formed XML), and
/// returns the element names in document order.
fn elements(page: &str) -> Vec<String> {
    let body = page
        .strip_prefix("<!DOCTYPE html>\n")
        .expect("starts with the doctype");
    let mut open: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find('<') {
        let text = &rest[..at];
        assert!(!text.contains('>'), "a stray '>' in text: {text:?}");
        let end = rest[at..].find('>').expect("every tag ends") + at;
        let tag = &rest[at + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(!name.is_empty(), "a tag without a name: <{tag}>");
        for quoted in tag.split('"').skip(1).step_by(2) {
            assert!(
                !quoted.contains('<'),
                "unescaped '<' in an attribute: {quoted:?}"
            );
        }
        seen.push(name.clone());
        if !tag.ends_with('/') && name != "meta" {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
    assert!(rest.trim().is_empty());
    seen
}

fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

/// The text of the section with this id.
fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = page[start..].find("</section>").expect("closed") + start;
    &page[start..end]
}

#[test]
fn one_run_pictures_the_partition_sides_every_node_and_the_crash() {
    let page = page_of(None, "one");
    let names = elements(&page);
    assert_eq!(names.first().map(String::as_str), Some("html"));
    for forbidden in [
        "<script", "http:", "https:", "src=", "href=", "url(", "@import",
    ] {
        assert!(
            !page.contains(forbidden),
            "the page must fetch nothing: {forbidden}"
        );
    }
    assert!(page.contains("<h1>Scenario html-known · 6 nodes · seed 5</h1>"));

    let timeline = section(&page, "timeline");
    assert_eq!(count(timeline, "<svg"), 1);
    for slot in 0..6 {
        assert!(
            timeline.contains(&format!(">n{slot}</text>")),
            "row of n{slot}"
        );
    }
    // The partition's caption names the two sides, and every row is marked with its side.
    assert!(
        timeline.contains("partition 1 (8.0s–16.0s): A = n0–n2 · B = n3–n5"),
        "{timeline}"
    );
    assert_eq!(count(timeline, "class=\"sidename\">A</text>"), 3);
    assert_eq!(count(timeline, "class=\"sidename\">B</text>"), 3);
    // Each view state that must have happened shows: agreement, disagreement (the partition),
    // and n4 down after its crash.
    for class in ["agrees", "differs", "down"] {
        assert!(timeline.contains(&format!("class=\"{class}\"")), "{class}");
    }
    assert!(timeline.contains("n4 24.0s–40.0s: down") || timeline.contains("n4 24.1s–40.0s: down"));
    assert!(timeline.contains("<li>24.000s crash n4</li>"), "{timeline}");

    let distributions = section(&page, "distributions");
    assert_eq!(
        count(distributions, "<svg"),
        3,
        "one run: no per-seed chart"
    );
    // One crash, seen by all survivors: one sample, and bars that count it.
    assert!(
        distributions.contains("seconds · 1 samples"),
        "{distributions}"
    );
    assert!(distributions.contains("class=\"bar\""));
    assert!(distributions.contains("class=\"median\""));

    let bytes = section(&page, "bytes");
    assert_eq!(count(bytes, "class=\"node\""), 6, "one line per node");
    assert_eq!(count(bytes, "class=\"median-line\""), 1);
    assert!(bytes.contains("<title>partition 8.0s–16.0s</title>"));
}

#[test]
fn a_sweep_shows_distributions_over_seeds() {
    let page = page_of(Some("1..4".parse().unwrap()), "sweep");
    elements(&page);
    assert!(page.contains("3 seeds (1–3)"));
    let distributions = section(&page, "distributions");
    assert!(distributions.contains("over 3 seeds"));
    assert_eq!(count(distributions, "<svg"), 5);
    // Each seed's slowest convergence and detection, as a dot with a tooltip naming the seed
    // (plus one of each in the legend).
    assert_eq!(count(distributions, "class=\"converge-dot\""), 4);
    assert_eq!(count(distributions, "class=\"detect-dot\""), 4);
    for seed in 1..=3 {
        assert!(distributions.contains(&format!("<title>seed {seed}: crash seen by all after")));
    }
    // One crash per seed, and one bytes sample per seed.
    assert_eq!(
        count(distributions, "seconds · 3 samples"),
        2,
        "{distributions}"
    );
    assert!(distributions.contains("B/s · 3 samples"));
    // The first seed is pictured, recorded again with views.
    assert!(section(&page, "timeline").contains("(seed 1)"));
}

#[test]
fn an_unwritable_path_is_an_error_with_the_path() {
    let err = cli::run(SimArgs {
        scenario: Some("steady".into()),
        nodes: Some(3),
        html: Some(PathBuf::from("/nonexistent-dir/report.html")),
        ..SimArgs::default()
    })
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("/nonexistent-dir/report.html"),
        "{err}"
    );
}

/// A detection bound no cluster can meet: every seed fails, and the page says so.
const TOO_STRICT: &str = r#"
name = "too-strict"
nodes = 4
duration = "20s"

[[at]]
time = "5s"
crash = 2

[checks]
detection = "100ms"
"#;

#[test]
fn failed_seeds_are_listed_with_replays_shaded_and_the_first_is_pictured() {
    let scenario = temp("strict.toml");
    let html = temp("strict.html");
    std::fs::write(&scenario, TOO_STRICT).unwrap();
    let err = cli::run(SimArgs {
        file: Some(scenario.clone()),
        seeds: Some("4..7".parse().unwrap()),
        html: Some(html.clone()),
        ..SimArgs::default()
    })
    .expect_err("no detection within 100 ms");
    assert_eq!(err.exit_code(), 1);
    let page = std::fs::read_to_string(&html).expect("written for a failed sweep too");
    let _ = std::fs::remove_file(&scenario);
    let _ = std::fs::remove_file(&html);
    elements(&page);
    assert!(page.contains("0 passed, <span class=\"failed\">3 failed</span>"));
    for seed in 4..7 {
        assert!(
            page.contains(&format!(
                "<li>seed {seed}: replay with <code>foundation sim --file"
            )),
            "{page}"
        );
        assert!(page.contains(&format!("<title>seed {seed} failed</title>")));
    }
    assert!(section(&page, "timeline").contains("(seed 4)"));
}
