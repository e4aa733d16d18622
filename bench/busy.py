#!/usr/bin/env python3
"""Runs a command and measures how busy the rest of the machine was meanwhile.

    bench/busy.py --label NAME --log FILE.jsonl [--max-cores 0.1] -- COMMAND [ARGS...]

The CPU time every process used during the run (from /proc/stat) minus the time the
command and its children used (their rusage) is what other processes took. Divided by the
run's wall time it reads as cores kept busy by others. A timing taken while others used
more than --max-cores is marked "under load" in FILE.jsonl and on stderr: a benchmark on
2 cores is not comparable when a third of a core goes elsewhere. The command's exit
status is passed through.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def busy_seconds():
    """CPU seconds all cores have spent outside idle and iowait since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--max-cores", type=float, default=0.1)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command")
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_busy, started = busy_seconds(), time.monotonic()
    rc = subprocess.call(command)
    wall = time.monotonic() - started
    after_busy = busy_seconds()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    others = max(0.0, (after_busy - before_busy) - ours)
    cores = others / wall if wall > 0 else 0.0
    record = {
        "label": args.label,
        "wall_s": round(wall, 2),
        "cpu_s": round(ours, 2),
        "others_cpu_s": round(others, 2),
        "others_cores": round(cores, 3),
        "under_load": cores > args.max_cores,
        "exit": rc,
    }
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")
    mark = "UNDER LOAD: not comparable" if record["under_load"] else "idle enough"
    print(f"busy: {args.label}: others used {cores:.2f} cores over {wall:.0f} s ({mark})", file=sys.stderr)
    sys.exit(rc)


if __name__ == "__main__":
    main()
