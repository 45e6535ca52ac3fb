//! Distributed Erlang as a second peer (issue 16, item 4). Included by path from `services.rs`.
//!
//! Two `erl` nodes on 127.0.0.1 joined by distribution (one TCP connection between them, as
//! Erlang clusters run): for pub/sub a sink process counting 64-byte binaries sent by the
//! other node; for RPC an echo process answering `{From, Ref, Bin}` with `{Ref, Bin}` — what
//! `gen_server:call` does without its monitor — called by one process, then by 64 processes at
//! once. Timing and CPU are measured inside the Erlang nodes (`erlang:monotonic_time`,
//! `erlang:statistics(runtime)` of both nodes: the BEAM's scheduler threads busy-wait before they
//! sleep, and that CPU is counted, as it is what an Erlang deployment pays).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::percentiles::Percentiles;
use crate::{have, human, thousands, Burst, FoundationRpc, Plan, CALLERS, SMALL};

const COOKIE: &str = "foundation_services_bench";

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node name unique to this run.
fn node_name(role: &str) -> String {
    format!("{role}{}@127.0.0.1", std::process::id())
}

/// Starts the receiving node, running `code` (which registers the process the other node
/// talks to) and then idling.
fn start_receiver(name: &str, code: &str) -> Result<Killed, String> {
    if !have("erl") {
        return Err(
            "`erl` not found (install the Debian package `erlang-base` for this column)".into(),
        );
    }
    let child = Command::new("erl")
        .args([
            "-noshell",
            "-name",
            name,
            "-setcookie",
            COOKIE,
            "-eval",
            code,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("erl did not start: {e}"))?;
    Ok(Killed(child))
}

/// Runs the measuring node's `code` (at most 120 s) and returns the numbers it printed.
fn run_measurer(code: &str) -> Result<Vec<u64>, String> {
    let output = Command::new("timeout")
        .args(["120", "erl", "-noshell", "-name", &node_name("source")])
        .args(["-setcookie", COOKIE, "-eval", code])
        .output()
        .map_err(|e| format!("erl did not run: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // `~w` prints lists as `[1,2,3]`: every run of digits is a number.
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    if numbers.is_empty() {
        return Err(format!(
            "unexpected output from erl: {:?} {:?}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(numbers)
}

/// Erlang that waits (up to 10 s) until `Name` is registered on `Node`.
fn await_registered(node: &str, name: &str) -> String {
    format!(
        "Wait = fun W(0) -> exit(no_{name}); \
                   W(K) -> case rpc:call('{node}', erlang, whereis, [{name}]) of \
                       P when is_pid(P) -> ok; _ -> timer:sleep(100), W(K - 1) end end, \
         Wait(100)"
    )
}

/// One flat-out burst of [`SMALL`]-byte binaries from one node to a sink on the other.
pub fn burst(plan: &Plan) -> Result<Burst, String> {
    let sink_node = node_name("sink");
    // The sink counts `Total` binaries after `{go, From, Total}`, then tells `From`.
    let _sink = start_receiver(
        &sink_node,
        "Loop = fun L(wait, _) -> receive {go, From, Total} -> L(Total, From) end; \
                    L(0, From) -> From ! done, L(wait, none); \
                    L(K, From) -> receive B when is_binary(B) -> L(K - 1, From) end end, \
         register(sink, spawn(fun() -> Loop(wait, none) end)).",
    )?;
    let burst = plan.burst.min(1_000_000);
    let numbers = run_measurer(&format!(
        "{wait}, \
         Sink = {{sink, '{sink_node}'}}, Bin = binary:copy(<<90>>, {SMALL}), \
         Send = fun S(0) -> ok; S(K) -> Sink ! Bin, S(K - 1) end, \
         Sink ! {{go, self(), 20000}}, Send(20000), receive done -> ok end, \
         T0 = erlang:monotonic_time(microsecond), \
         Sink ! {{go, self(), {burst}}}, Send({burst}), \
         T1 = erlang:monotonic_time(microsecond), \
         receive done -> ok end, \
         T2 = erlang:monotonic_time(microsecond), \
         io:format(\"~p ~p ~p~n\", [{burst}, T1 - T0, T2 - T0]), halt().",
        wait = await_registered(&sink_node, "sink"),
    ))?;
    match numbers[..] {
        [sent, publish_us, total_us] => Ok(Burst {
            sent,
            delivered: sent,
            cpu: None,
            elapsed: Duration::from_micros(total_us),
            publish: Duration::from_micros(publish_us),
        }),
        _ => Err(format!("unexpected numbers from erl: {numbers:?}")),
    }
}

/// What Erlang's request/reply achieved: one caller's latency, and [`CALLERS`] callers' rate,
/// latency and CPU per call over the window.
pub struct Rpc {
    pub one: Percentiles,
    pub rate: f64,
    pub concurrent: Percentiles,
    pub cpu_per_call: Duration,
}

/// Request/reply between two Erlang nodes, measured as the Foundation and NATS columns are:
/// `plan.rpc_calls` sequential calls after 1,000 to warm up, then [`CALLERS`] processes calling
/// back to back for a 200 ms warm-up and `plan.concurrent_window`.
pub fn rpc(plan: &Plan) -> Result<Rpc, String> {
    let echo_node = node_name("echo");
    let _echo = start_receiver(
        &echo_node,
        "Loop = fun L() -> receive {From, Ref, Bin} -> From ! {Ref, Bin} end, L() end, \
         register(echo, spawn(fun() -> Loop() end)).",
    )?;
    let window_ms = plan.concurrent_window.as_millis();
    let numbers = run_measurer(&format!(
        "{wait}, \
         Echo = {{echo, '{echo_node}'}}, Bin = binary:copy(<<66>>, {SMALL}), \
         Now = fun() -> erlang:monotonic_time(nanosecond) end, \
         Call = fun() -> R = make_ref(), Echo ! {{self(), R, Bin}}, receive {{R, _}} -> ok end end, \
         Timed = fun() -> T0 = Now(), Call(), Now() - T0 end, \
         Pct = fun(L) -> S = lists:sort(L), N = length(S), \
                   At = fun(P) -> lists:nth(max(1, (N * P + 99) div 100), S) end, \
                   [N, At(50), At(99), lists:last(S)] end, \
         Cpu = fun() -> {{A, _}} = erlang:statistics(runtime), \
                   {{B, _}} = rpc:call('{echo_node}', erlang, statistics, [runtime]), A + B end, \
         [Call() || _ <- lists:seq(1, 1000)], \
         One = Pct([Timed() || _ <- lists:seq(1, {calls})]), \
         Start = Now() + 200000000, End = Start + {window_ms} * 1000000, Self = self(), \
         Run = fun R(Acc) -> T0 = Now(), Call(), T1 = Now(), \
                   if T1 >= End -> Self ! {{done, Acc}}; \
                      T0 >= Start -> R([T1 - T0 | Acc]); \
                      true -> R(Acc) end end, \
         [spawn(fun() -> Run([]) end) || _ <- lists:seq(1, {CALLERS})], \
         timer:sleep(200), Cpu0 = Cpu(), timer:sleep({window_ms}), Cpu1 = Cpu(), \
         All = lists:append([receive {{done, L}} -> L end || _ <- lists:seq(1, {CALLERS})]), \
         io:format(\"~w ~w ~w~n\", [One, Pct(All), Cpu1 - Cpu0]), halt().",
        wait = await_registered(&echo_node, "echo"),
        calls = plan.rpc_calls,
    ))?;
    let percentiles = |n: &[u64]| Percentiles {
        n: n[0] as usize,
        p50: Duration::from_nanos(n[1]),
        p99: Duration::from_nanos(n[2]),
        max: Duration::from_nanos(n[3]),
    };
    match numbers[..] {
        [_, _, _, _, done, _, _, _, cpu_ms] => {
            let window = plan.concurrent_window.as_secs_f64();
            Ok(Rpc {
                one: percentiles(&numbers[0..4]),
                rate: done as f64 / window,
                concurrent: percentiles(&numbers[4..8]),
                cpu_per_call: Duration::from_millis(cpu_ms) / done.max(1) as u32,
            })
        }
        _ => Err(format!("unexpected numbers from erl: {numbers:?}")),
    }
}

impl Rpc {
    /// This column, and `ours` against it.
    pub fn print_against(&self, ours: &FoundationRpc) {
        let name = "distributed Erlang";
        println!(
            "{name:<24} p50 {:>9}  p99 {:>9}   {CALLERS} callers: {:>9} calls/s",
            human(self.one.p50),
            human(self.one.p99),
            thousands(self.rate)
        );
        println!(
            "{name:<24} at {CALLERS} callers: p50 {:>9}  p99 {:>9}  max {:>9}  CPU per call {:.2} µs",
            human(self.concurrent.p50),
            human(self.concurrent.p99),
            human(self.concurrent.max),
            self.cpu_per_call.as_secs_f64() * 1e6
        );
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        let theirs = &ours.concurrent;
        println!(
            "{}/Erlang: p50 {:.2}×  p99 {:.2}×  (lower is better)   {CALLERS}-caller rate {:.2}×, p99 {:.2}×, CPU per call {}",
            ours.placement.label(),
            ratio(ours.remote.p50, self.one.p50),
            ratio(ours.remote.p99, self.one.p99),
            theirs.rate / self.rate.max(1e-9),
            ratio(theirs.latency.p99, self.concurrent.p99),
            theirs
                .cpu_per_call
                .map_or("n/a".into(), |c| format!("{:.2}×", ratio(c, self.cpu_per_call)))
        );
    }
}
