#!/usr/bin/env python3
"""Times shell commands in interleaved rounds (benches/start-netns.sh).

    interleave.py --rounds N --warmup W --prepare CMD --out FILE.json NAME=CMD...

Every round runs each command once, in a shuffled order, each after PREPARE
(untimed), each through `sh -c` as hyperfine does. hyperfine runs all rounds of
one command, then all of the next: on a shared machine whose speed drifts over
seconds, the difference of two blocks' medians then carries the drift. Here the
commands of a round run within milliseconds of each other, so a difference
taken round by round ("paired") cancels it. Writes {name: [seconds per round]}
as JSON; the analysis is the caller's.
"""

import argparse
import json
import random
import subprocess
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--prepare", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("commands", nargs="+", help="NAME=SHELL COMMAND")
    args = ap.parse_args()
    commands = [tuple(c.split("=", 1)) for c in args.commands]
    if any(len(c) != 2 for c in commands):
        ap.error("commands are NAME=SHELL COMMAND")
    rng = random.Random(args.seed)
    times: dict[str, list[float]] = {name: [] for name, _ in commands}

    def run(cmd: str) -> float:
        subprocess.run(["sh", "-c", args.prepare], check=True)
        t0 = time.perf_counter_ns()
        r = subprocess.run(["sh", "-c", cmd], stdout=subprocess.DEVNULL)
        t1 = time.perf_counter_ns()
        if r.returncode != 0:
            raise SystemExit(f"interleave: `{cmd}` exited {r.returncode}")
        return (t1 - t0) / 1e9

    for i in range(args.warmup + args.rounds):
        order = commands[:]
        rng.shuffle(order)
        for name, cmd in order:
            t = run(cmd)
            if i >= args.warmup:
                times[name].append(t)
    with open(args.out, "w") as f:
        json.dump(times, f)


if __name__ == "__main__":
    main()
