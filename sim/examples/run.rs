//! Runs one standard scenario and prints its summary: `cargo run -p foundation-sim --example run -- steady 16 7`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("steady", String::as_str);
    let nodes = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let Some(scenario) = foundation_sim::scenario::standard::by_name(name, nodes) else {
        eprintln!("unknown scenario {name}");
        std::process::exit(2);
    };
    let report = foundation_sim::scenario::run(&scenario, seed, &Default::default());
    let summary = foundation_sim::report::SimReport::of(vec![report]);
    let _ = foundation_sim::report::print_summary(&summary, &mut std::io::stdout());
}
