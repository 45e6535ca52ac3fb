use foundation_sim::invariants::{Check, Invariant};
use foundation_sim::scenario::{run, standard, RunOptions};
use foundation_sim::world::{Observed, World};

struct Dbg;
impl Invariant for Dbg {
    fn name(&self) -> &'static str {
        "dbg"
    }
    fn on_event(&mut self, world: &World, o: &Observed) -> Check {
        let t = world.now_us();
        if t >= 25_000_000 && t < 29_000_000 {
            let kind = foundation_sim::world::event_kind(&o.event);
            let who = match &o.event {
                foundation_core::membership::MembershipEvent::Up(v)
                | foundation_core::membership::MembershipEvent::Failed(v)
                | foundation_core::membership::MembershipEvent::Left(v) => format!(
                    "n{} gen {}",
                    world.slot_of(v.id).unwrap_or(999),
                    v.generation
                ),
                _ => String::new(),
            };
            if kind != "updated" {
                println!("{:.3} n{} {kind} {who}", t as f64 / 1e6, o.observer);
            }
        }
        Ok(())
    }
    fn on_tick(&mut self, world: &World) -> Check {
        let t = world.now_us();
        if t >= 25_000_000 && t < 29_000_000 && t % 500_000 == 0 {
            let mut bad = 0;
            let mut ex = String::new();
            for (s, n) in world.nodes().iter().enumerate() {
                let Some(c) = n.core() else { continue };
                let alive: Vec<_> = c
                    .membership()
                    .alive()
                    .map(|m| (m.id, m.generation))
                    .collect();
                let mut miss = Vec::new();
                for (o, m) in world.nodes().iter().enumerate() {
                    if o != s && !alive.contains(&(m.id(), m.generation())) {
                        miss.push(o);
                    }
                }
                if !miss.is_empty() || alive.len() != 99 {
                    bad += 1;
                    if ex.len() < 400 {
                        ex += &format!(
                            " n{s}: {} alive, misses {:?};",
                            alive.len(),
                            &miss[..miss.len().min(6)]
                        );
                    }
                }
            }
            println!("{:.1}: {bad} nodes disagree;{ex}", t as f64 / 1e6);
        }
        Ok(())
    }
}

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let s = standard::by_name("partition-heal", 100)
        .unwrap()
        .invariant(|| Box::new(Dbg));
    let r = run(&s, seed, &RunOptions::default());
    println!("{:?}", r.measurements.convergence);
}
