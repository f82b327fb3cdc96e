#!/usr/bin/python3
"""Turns the raw results of scripts/bench.sh (one directory) into the Markdown
results table it prints and writes to results.md. Standard library only."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1]
ms = 1000.0


def load_times(case):
    """command name -> every run's wall time (s), over all rounds of a case."""
    times = {}
    order = []
    for f in sorted(glob.glob(os.path.join(out, f"{case}-round*.json"))):
        for r in json.load(open(f))["results"]:
            name = r["command"]
            if name not in times:
                order.append(name)
            times.setdefault(name, []).extend(r["times"])
    return order, times


def tsv(name):
    d = {}
    path = os.path.join(out, name)
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.rstrip("\n").partition("\t")
            d[k] = v
    return d


ir = tsv("callgrind.tsv")
rss = tsv("rss.tsv")
info = tsv("info.tsv")
lines = []
w = lines.append


def row(case, name, t, base, key=None):
    med = statistics.median(t) * ms
    mean = statistics.mean(t) * ms
    sd = statistics.stdev(t) * ms if len(t) > 1 else 0.0
    # hyperfine reports 0 ms for runs it could not time (a loaded machine).
    ratio = "" if base is None else (f"{med / base:.1f}×" if base > 0 else "n/a")
    key = key or name
    irs = f"{int(ir[key]):,}" if key in ir else "–"
    r = f"{int(rss[key]) / 1024:.1f}" if key in rss else "–"
    w(f"| {case} | {name} | {len(t)} | **{med:.2f}** | {mean:.2f} ± {sd:.2f} | {min(t) * ms:.2f} | {ratio} | {irs} | {r} |")
    return med


w("| case | command | runs | median ms | mean ± σ ms | min ms | ratio | callgrind Ir | max RSS MiB |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
medians = {}
for case, label in (("empty", "1: empty host"), ("full", f"2: host with {info.get('count', '?')} VMs")):
    order, times = load_times(case)
    base_name = "virt-l3 start"
    for name in order:
        if case == "empty":
            base = None if name == base_name else medians.get(("empty", base_name))
        else:
            base = medians.get(("empty", name))
        key = name if case == "empty" else f"{name} (full host)"
        medians[(case, name)] = row(label, name, times[name], base, key)
order, times = load_times("render")
for name in order:
    medians[("render", name)] = row("4: nwfilter render", name, times[name], None)
for k, v in info.items():
    if k.startswith("render "):
        w(f"| 4: nwfilter render | {k} | 1 | **{float(v):.0f}** (total) | | | | | |")
w("")
w("Ratio column: case 1, the alternative's median over virt-l3's (how many times slower it is);")
w("case 2, the same command's median on the full host over its median on the empty host.")
w("callgrind Ir: instructions executed in user space by every process of one invocation (valgrind --trace-children=yes).")
w("max RSS: the largest process of the invocation (GNU time %M), highest of 5 runs.")
if "render" in info:
    w(f"\nnwfilter render: {info['render']}")
if "status" in info:
    w(f"\n`virt-l3 status` over the full host (validates the generated population): {info['status']}")

# Goals.
w("\n**Goals**")
v1 = medians.get(("empty", "virt-l3 start"))
sh = medians.get(("empty", "hook.sh start"))
v2 = medians.get(("full", "virt-l3 start"))
if v1 and sh:
    w(f"- ≥10× faster than hook.sh (case 1): {sh / v1:.1f}× → {'met' if sh / v1 >= 10 else 'NOT met'}")
if "virt-l3 start" in rss:
    m = int(rss["virt-l3 start"]) / 1024
    w(f"- peak RSS < 8 MiB: {m:.1f} MiB → {'met' if m < 8 else 'NOT met'}")
if v1 and v2:
    w(f"- case 2 within 20% of case 1 (wall median): {v2 / v1:.2f}× → {'met' if v2 / v1 <= 1.2 else 'NOT met (see Ir)'}")
for name in ("virt-l3 start", "virt-l3 start, routed prefix"):
    i1, i2 = ir.get(name), ir.get(f"{name} (full host)")
    if i1 and i2:
        w(f"- case 2 within 20% of case 1 (callgrind Ir, {name}): {int(i2) / int(i1):.2f}× → {'met' if int(i2) / int(i1) <= 1.2 else 'NOT met'}")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text)
