//! Per-thread CPU over a benchmark phase, from the kernel's /proc/<pid>/task/*/schedstat:
//! whether a phase's rate is bounded by its threads' CPU (running), by the machine's other work
//! (waiting runnable for a CPU) or by a wait of its own (neither: sleeping on something).
//! Included by path from `services.rs`.

use std::collections::BTreeMap;
use std::time::Instant;

/// One thread's counters: its name, nanoseconds on a CPU, nanoseconds runnable but waiting for
/// one, and times it was put on a CPU.
struct Counters {
    name: String,
    run: u64,
    wait: u64,
    slices: u64,
}

/// The counters of every thread of some processes at one moment, by (pid, thread id), and
/// when they were read.
pub struct Threads(BTreeMap<(String, String), Counters>, Instant);

impl Threads {
    /// Reads the threads of `pids` ("self" for this process); a process or thread that cannot
    /// be read is left out.
    pub fn read(pids: &[&str]) -> Threads {
        let mut threads = BTreeMap::new();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(counters) = read_task(&task.path()) else {
                    continue;
                };
                let tid = task.file_name().to_string_lossy().into_owned();
                threads.insert(((*pid).to_owned(), tid), counters);
            }
        }
        Threads(threads, Instant::now())
    }

    /// Prints, for the threads that ran at least 1 % of the time since `before` was read, the
    /// share of that time each ran and waited runnable, and how often it was put on a CPU; then
    /// the sums. The time between the readings, not the burst's: a lossy burst's readings also
    /// span the quiet wait after its last delivery, when the threads mostly sleep.
    pub fn print_since(&self, before: &Threads) {
        let nanos = self.1.duration_since(before.1).as_nanos().max(1) as f64;
        let share = |n: u64| 100.0 * n as f64 / nanos;
        let (mut run, mut wait) = (0, 0);
        let mut each = Vec::new();
        // A thread started during the phase (Go starts some as it needs them) counts from zero.
        let born = Counters {
            name: String::new(),
            run: 0,
            wait: 0,
            slices: 0,
        };
        for (key, now) in &self.0 {
            let then = before.0.get(key).unwrap_or(&born);
            let ran = now.run.saturating_sub(then.run);
            let waited = now.wait.saturating_sub(then.wait);
            run += ran;
            wait += waited;
            if share(ran) >= 1.0 {
                let slices = now.slices.saturating_sub(then.slices);
                each.push(format!(
                    "{} {:.0}/{:.0}/{slices}",
                    now.name,
                    share(ran),
                    share(waited)
                ));
            }
        }
        println!(
            "{:<22} threads (% run/% waiting for a CPU/runs): {}",
            "",
            each.join(", ")
        );
        println!(
            "{:<22} in all {:.2} CPUs running, {:.2} waiting for one",
            "",
            run as f64 / nanos,
            wait as f64 / nanos
        );
    }
}

fn read_task(task: &std::path::Path) -> Option<Counters> {
    let name = std::fs::read_to_string(task.join("comm")).ok()?;
    let stat = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(Counters {
        name: name.trim().to_owned(),
        run: fields.next()??,
        wait: fields.next()??,
        slices: fields.next()??,
    })
}
