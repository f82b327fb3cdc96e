#!/usr/bin/env python3
"""Security-group lab (issue 3): attacks and legitimate flows through libvirt nwfilter.

Run by tests/suites/nwfilter-lab.sh, which starts a private libvirtd (tests/lib/libvirtd.sh)
and defines virt-l3's rendered filters in it. This script builds the topology inside the
lab's network namespace (bridge cloudbr0 = the hypervisor side) and three "guests"
(network namespaces joined by veth pairs whose host ends are bridge ports), then runs,
for each mode:

  unfiltered    no filter bound: the CONTROL. Every attack must arrive where it is
                aimed, every legitimate flow must work, or the test itself is broken.
  virt-l3       virt-l3's per-NIC filters bound with `virsh nwfilter-binding-create`:
                every attack must be blocked, every legitimate flow must work, before
                and after the attacks.
  clean-traffic libvirt's clean-traffic with IP parameters: measured, not asserted.
  production    as in production (issue 14): virt-l3's filters bound, and the hook
                (`virt-l3 hook NAME prepare|start|started`, a status file per guest) has
                installed virt-l3's nftables tables, accepted the three taps and isolated
                them; `virt-l3 watch` runs. Every attack must be blocked, every legitimate
                flow must work; the hypervisor's own addresses are protected there, so the
                flows aimed at them in the other modes go to the upstream namespace.

Every mode also meets (issue 14): a fourth, unfiltered port no domain record names
(the rogue port) joining the bridge and attacking; TCP from a guest to the hypervisor's
sshd (22) and BGP (179) ports and to a management network; traffic with an upstream
namespace routed through the hypervisor. Mode production also: a second domain with
A's MAC (`nwfilter define` and the hook's prepare must refuse it).

Attack frames are built with scapy and written on a packet socket of the sending
guest's eth0 (or of cloudbr0 for traffic towards a guest). Each carries a unique
marker (in the IP payload, or after an ARP/RARP/other frame); capture sockets on cloudbr0 (what reaches the
hypervisor) and on every guest's eth0 (what reaches the other guests) look for it.
Port isolation is left off, so the filters alone are tested.

The modules beside this script: lab.py (the topology, the Lab class), attacks.py (the frames
and the attacks judged by their effect), perimeter.py (the rogue port, the services, the
duplicate MAC, the flushed tables), legit.py (the legitimate flows).
"""

import argparse
import json
import os
import sys

from lab import Lab
from attacks import ATTACKS, EFFECT_ATTACKS, gateway_dad, run_attacks, run_effect_attacks
from perimeter import ROGUE, SERVICES, duplicate_mac, restore, rogue, run_services
from legit import LEGIT, run_legit


def run_modes(lab, modes):
    lab.build()
    report = {}
    for mode in modes:
        lab.bind(mode)
        before = run_legit(lab)
        attacks = run_attacks(lab)
        effects = run_effect_attacks(lab)
        # The vulnerable baseline: fe80::1 re-added WITHOUT nodad (not the shipped way),
        # unfiltered only: the attack must work there, or the lab could not see it.
        baseline = list(gateway_dad(lab, nodad=False)) if mode == "unfiltered" else None
        services = run_services(lab)
        rogue_port = rogue(lab)
        duplicate = duplicate_mac(lab) if mode == "production" else None
        restored_ms = restore(lab) if mode == "production" else None
        after = run_legit(lab)
        report[mode] = dict(before=before, attacks=attacks, effects=effects, baseline=baseline, after=after,
                            services=services, rogue=rogue_port, duplicate=duplicate,
                            restored_ms=restored_ms)
        blocked = (sum(not v for v in attacks.values()) + sum(not v[1] for v in effects.values())
                   + sum(not v for v in services.values()) + sum(not v for v in rogue_port["after"].values()))
        total = len(attacks) + len(effects) + len(services) + len(rogue_port["after"])
        if duplicate is not None:
            blocked += duplicate["define_refused"] + duplicate["prepare_refused"]
            total += 2
        print(f"{mode}: {blocked}/{total} attacks blocked, "
              f"legit before {sum(before.values())}/{len(before)}, after {sum(after.values())}/{len(after)}",
              flush=True)
        if mode == "production":
            print(f"production: rogue port isolated after {rogue_port['isolated_ms']} ms, accepted: "
                  f"{rogue_port['accepted']}, `check` names it: {rogue_port['check_names_it']}; passed in its "
                  f"first second: {rogue_port['first_second']}; duplicate MAC: {duplicate}; tables flushed "
                  f"and deleted: restored by watch after {restored_ms} ms", flush=True)
    return report


def rogue_and_service_table(report, modes, failures):
    """The rows of the rogue port, the services and the duplicate MAC; failures appended."""
    lines = ["| attack (issue 14) | property | " + " | ".join(modes) + " |",
             "|---|---|" + "---|" * len(modes)]
    for name, prop, _pkt, points in ROGUE:
        cells = []
        for m in modes:
            r = report[m]["rogue"]
            got, first = r["after"][name], r["first_second"][name]
            if m == "unfiltered":
                cells.append("arrives" if got else "MISSING")
                if not got:
                    failures.append(f"control: rogue attack {name} did not arrive at {points}: the test cannot see it")
            else:
                cells.append(("blocked" if not got else f"PASSES to {','.join(got)}")
                             + (f" (first second: {','.join(first)})" if first else " (first second: nothing)"))
            if m == "production" and (got or first):
                failures.append(f"production: rogue attack {name} got through to {got or first}")
        lines.append(f"| `{name}` (rogue port) | {prop} | " + " | ".join(cells) + " |")
    for name, desc, _fn in SERVICES:
        cells = []
        for m in modes:
            got = report[m]["services"][name]
            if m == "unfiltered":
                cells.append("connects" if got else "MISSING")
                if not got:
                    failures.append(f"control: {name} ({desc}) does not connect without a filter")
            else:
                cells.append("CONNECTS" if got else "blocked")
            if m == "production" and got:
                failures.append(f"production: {name} ({desc}) connects")
        lines.append(f"| `{name}` (a) | {desc} | " + " | ".join(cells) + " |")
    if "production" in report:
        r = report["production"]["rogue"]
        if r["isolated_ms"] is None or r["accepted"] or not r["check_names_it"]:
            failures.append(f"production: the rogue port: isolated after {r['isolated_ms']} ms (watch), "
                            f"accepted {r['accepted']}, named by check {r['check_names_it']}")
        ms = report["production"]["restored_ms"]
        if ms is None or ms > 1000:
            failures.append(f"production: watch restored the flushed and deleted tables after {ms} ms")
        d = report["production"]["duplicate"]
        if not (d["define_refused"] and d["filter_unchanged"]):
            failures.append(f"production: nwfilter define of a domain with A's MAC: {d}")
        if not (d["prepare_refused"] and d["names_both"]):
            failures.append(f"production: hook prepare of a domain with A's MAC: {d}")
        cells = ["not run"] * (len(modes) - 1) + [
            "refused, A's filter unchanged" if d["define_refused"] and d["filter_unchanged"] else "ACCEPTED"]
        lines.append("| `duplicate-mac-define` (domain d) | a second domain with A's MAC: `nwfilter define` | "
                     + " | ".join(cells) + " |")
        cells[-1] = "refused naming both" if d["prepare_refused"] and d["names_both"] else "ACCEPTED"
        lines.append("| `duplicate-mac-prepare` (domain d) | a second domain with A's MAC: hook `prepare` | "
                     + " | ".join(cells) + " |")
        cells[-1] = f"restored in {ms} ms" if ms is not None and ms <= 1000 else f"NOT RESTORED ({ms} ms)"
        lines.append("| `tables-flushed-and-deleted` (host) | `nft flush table inet virt_l3`, "
                     "`nft delete table bridge virt_l3`: watch restores them and the accepted taps within 1 s | "
                     + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--holder", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--modes", default="unfiltered,virt-l3,clean-traffic,production")
    ap.add_argument("--bin", required=True, help="the virt-l3 binary (mode production)")
    ap.add_argument("--markdown", help="write the result table here")
    args = ap.parse_args()
    lab = Lab(args.holder, args.prefix, args.work, args.bin)
    try:
        report = run_modes(lab, args.modes.split(","))
    finally:
        try:
            lab.bind("unfiltered")
        finally:
            lab.close()
    with open(os.path.join(args.work, "matrix.json"), "w") as f:
        json.dump(report, f, indent=1)

    failures = []
    modes = list(report)
    lines = rogue_and_service_table(report, modes, failures)

    def cell_attack(mode, name, points):
        got = report[mode]["attacks"][name]
        if mode == "unfiltered":
            return "arrives" if sorted(got) == sorted(points) else f"MISSING at {','.join(sorted(set(points) - set(got)))}"
        return "blocked" if not got else f"PASSES to {','.join(got)}"

    lines += ["", "| attack (from) | property | " + " | ".join(modes) + " |",
              "|---|---|" + "---|" * len(modes)]
    for name, prop, sender, _pkt, points in ATTACKS:
        cells = [cell_attack(m, name, points) for m in modes]
        lines.append(f"| `{name}` ({sender}) | {prop} | " + " | ".join(cells) + " |")
        if "unfiltered" in report and sorted(report["unfiltered"]["attacks"][name]) != sorted(points):
            failures.append(f"control: attack {name} did not arrive at {points} without a filter "
                            f"(got {report['unfiltered']['attacks'][name]}): the test cannot see it")
        for m in ("virt-l3", "production"):
            if m in report and report[m]["attacks"][name]:
                failures.append(f"{m}: attack {name} ({prop}) got through to {report[m]['attacks'][name]}")
    for name, prop, control, _run in EFFECT_ATTACKS:
        cells = []
        for m in modes:
            arrived, effect, detail = report[m]["effects"][name]
            if m == "unfiltered":
                cells.append(f"arrives ({detail})" if arrived else f"MISSING ({detail})")
            else:
                cells.append(("blocked" if not arrived else "no effect") + f" ({detail})" if not effect
                             else f"EFFECT ({detail})")
        lines.append(f"| `{name}` (a) | {prop} | " + " | ".join(cells) + " |")
        if "unfiltered" in report and not report["unfiltered"]["effects"][name][0]:
            failures.append(f"control: attack {name}: without a filter, not seen ({control}): the test cannot see it")
        for m in ("virt-l3", "production"):
            if m in report and report[m]["effects"][name][1]:
                failures.append(f"{m}: attack {name} ({prop}) had its effect: {report[m]['effects'][name][2]}")
    if "unfiltered" in report:
        arrived, effect, detail = report["unfiltered"]["baseline"]
        cells = [(f"EFFECT ({detail})" if effect else f"NO EFFECT ({detail})") if m == "unfiltered" else "not run"
                 for m in modes]
        lines.append("| `gateway-dad-readd-plain` (a) | the vulnerable baseline: the same with a plain "
                     "`ip address add` (no `nodad`, not the shipped way), unfiltered: the attack works | "
                     + " | ".join(cells) + " |")
        if not (arrived and effect):
            failures.append(f"control: fe80::1 re-added without nodad, unfiltered: the attack did not work "
                            f"({detail}): the test cannot see it")
    lines += ["", "| legitimate flow | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for name, desc, _fn in LEGIT:
        cells = []
        for m in modes:
            b, a = report[m]["before"][name], report[m]["after"][name]
            cells.append("works" if b and a else
                         f"FAILS ({'before' if not b else ''}{' and ' if not b and not a else ''}{'after' if not a else ''})")
            if m in ("unfiltered", "virt-l3", "production") and not (b and a):
                failures.append(f"{m}: legitimate flow {name} ({desc}) fails "
                                f"{'before' if not b else 'after'} the attacks")
        lines.append(f"| `{name}`: {desc} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
