#!/usr/bin/env python3
"""Where the threads of an RPC benchmark phase waited for a CPU, from a `perf sched record`.

    perf sched record -o sched.data -- <services bench binary> --bench quick rpc
    engine/benches/services/cpu_waits.py sched.data --window responder \
        --threads responder,tokio-rt-worker --processes services
    engine/benches/services/cpu_waits.py sched.data --window nats-server \
        --threads nats-server,tokio-rt-worker --processes services,nats-server

`--window NAME`: the span from the first to the last switch of a thread called NAME in any
process (the responder's own runtime exists only during Foundation's phase, nats-server only
during NATS's; record one benchmark at a time). `--threads`: the names of the threads followed,
in the processes whose main thread's name starts with one of `--processes` (other programs have
tokio workers too). For each time one of them went onto a CPU after waiting runnable, the wait is counted as "preempted" (it was switched out runnable) or
"woken" (it slept and was woken), and every wait of 2 ms or more is attributed to what held the
CPU: for a preempted thread, the thread that replaced it; for a woken one, the thread it took
the CPU from when it finally ran (`sched_waking` names the CPU a thread last ran on, not the one
the kernel then places it on, so the waking event only marks when the wait began). A 64-caller stall (every caller waiting at once) needs only one
such wait in the stage all calls pass through.
"""
import argparse
import collections
import re
import subprocess
from typing import NamedTuple

# perf script -F pid,tid,time,cpu,event,trace: the task running when the event fired, then it.
PREFIX = r"\s*(?P<pid>\d+)/(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+): +"
SWITCH = re.compile(
    PREFIX + r"sched:sched_switch: prev_comm=(?P<prev_comm>.*?) prev_pid=(?P<prev>\d+) "
    r"prev_prio=\d+ prev_state=(?P<state>\S+) ==> next_comm=(?P<next_comm>.*?) next_pid=(?P<next>\d+)"
)
WAKING = re.compile(PREFIX + r"sched:sched_waking: comm=(?P<comm>.*?) pid=(?P<woken>\d+) ")
LONG = 2e-3


class Event(NamedTuple):
    time: float
    cpu: int
    switch: re.Match | None
    waking: re.Match | None


def events(path):
    script = subprocess.run(
        ["perf", "script", "-i", path, "-F", "pid,tid,time,cpu,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in script.splitlines():
        switch, waking = SWITCH.match(line), None
        if not switch and not (waking := WAKING.match(line)):
            continue
        m = switch or waking
        yield Event(float(m["time"]), int(m["cpu"]), switch, waking)


def followed(evs, names, processes):
    """The threads called one of `names` in a process whose main thread is called one of
    `processes`."""
    process_of, comm_of = {}, {}
    for m in (e.switch for e in evs if e.switch):
        process_of[int(m["tid"])] = int(m["pid"])
        comm_of[int(m["prev"])] = m["prev_comm"]
    return {
        tid for tid, pid in process_of.items()
        if comm_of.get(tid, "").startswith(tuple(names))
        and comm_of.get(pid, "").startswith(tuple(processes))
    }


def window(evs, name):
    times = [e.time for e in evs if e.switch
             and name in (e.switch["prev_comm"][:len(name)], e.switch["next_comm"][:len(name)])]
    return min(times), max(times)


def short(comm):
    return comm.split()[0] if comm else "?"


def waits(evs, ours, start, end):
    state, since, holder = {}, {}, {}
    counts, long_by = collections.Counter(), collections.Counter()
    for e in evs:
        if m := e.waking:
            tid = int(m["woken"])
            if state.get(tid) == "sleeping":
                state[tid], since[tid] = "woken", e.time
            continue
        m = e.switch
        prev, nxt = int(m["prev"]), int(m["next"])
        if prev in ours:
            state[prev] = "preempted" if m["state"].startswith("R") else "sleeping"
            since[prev], holder[prev] = e.time, "replaced by: " + short(m["next_comm"])
        if nxt in ours:
            if state.get(nxt) == "woken":
                holder[nxt] = "took the CPU from: " + short(m["prev_comm"])
            if state.get(nxt) in ("preempted", "woken") and start <= e.time <= end:
                waited = e.time - since[nxt]
                counts[(state[nxt], waited >= LONG)] += 1
                if waited >= LONG:
                    long_by[(state[nxt], holder[nxt])] += 1
            state[nxt] = "running"
    return counts, long_by


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--window", required=True)
    parser.add_argument("--threads", required=True)
    parser.add_argument("--processes", required=True)
    args = parser.parse_args()
    evs = list(events(args.data))
    start, end = window(evs, args.window)
    ours = followed(evs, args.threads.split(","), args.processes.split(","))
    counts, long_by = waits(evs, ours, start, end)
    print(f"window {start:.3f}–{end:.3f} s ({end - start:.2f} s), {len(ours)} threads followed")
    for how in ("preempted", "woken"):
        print(f"  {how}: {counts[(how, False)]} waits under 2 ms, {counts[(how, True)]} of 2 ms or more")
    print("  waits of 2 ms or more, by what held the CPU:")
    for (how, by), n in long_by.most_common(12):
        print(f"    {n:5}  {how}, {by}")


if __name__ == "__main__":
    main()
