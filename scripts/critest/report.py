#!/usr/bin/env python3
"""Side-by-side report of critest runs (scripts/critest.sh), and its verdict.

usage: report.py --skip-list skip.txt VERSION:HANDLER:RUN_DIR...

Each RUN_DIR holds critest's junit.xml, `wall` (seconds), containerd.log and cleanup.log. For every
containerd version that has both a runc and a wasmpod run, the specs are compared by name: the
exit status is 1 when a spec passed under runc and did not pass under wasmpod (failed, timed out,
or never ran), unless skip.txt names it; 2 when a run left no usable junit.xml; else 0.
"""

import argparse
import os
import re
import sys
import xml.etree.ElementTree as ET

INACTIVE = "received message on inactive stream"
NOT_PASSED = {"failed", "panicked", "timedout", "interrupted", "aborted"}


def load_skips(path):
    """(runtimes, spec text, reason) of each entry of skip.txt."""
    skips = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            who, spec, reason = (p.strip() for p in line.split("|", 2))
            skips.append((who, spec, reason))
    return skips


def summary(message):
    """One line saying why a spec failed: the gRPC error if there is one, else the first lines
    of gomega's message (ids shortened to 12 characters)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    rpc = next((ln for ln in lines if ln.startswith("rpc error:")), None)
    if rpc is None:
        lines = [ln for ln in lines[:6] if not ln.startswith(("{", "<*"))][:4]
        rpc = " ".join(lines)
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1", rpc)


def read_run(run_dir):
    """{spec name: (status, first line of the failure)}, suite-level problems, and run facts."""
    facts = {"wall": None, "inactive": None, "leftovers": 0}
    try:
        with open(os.path.join(run_dir, "wall"), encoding="utf-8") as f:
            facts["wall"] = int(f.read().strip())
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(run_dir, "containerd.log"), encoding="utf-8", errors="replace") as f:
            facts["inactive"] = sum(INACTIVE in line for line in f)
    except OSError:
        pass
    try:
        with open(os.path.join(run_dir, "cleanup.log"), encoding="utf-8", errors="replace") as f:
            facts["leftovers"] = sum(line.startswith("killed leftover") for line in f)
    except OSError:
        pass
    specs, suite = {}, []
    try:
        root = ET.parse(os.path.join(run_dir, "junit.xml")).getroot()
    except (OSError, ET.ParseError) as e:
        return None, [f"no usable junit.xml: {e}"], facts
    for prop in root.iter("property"):
        if prop.get("name") == "SpecialSuiteFailureReason" and prop.get("value"):
            suite.append(prop.get("value"))
    for case in root.iter("testcase"):
        name, status = case.get("name", ""), case.get("status", "")
        why = ""
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                why = summary(node.get("message") or node.text or "")
        if not name.startswith("[It] "):
            if status in NOT_PASSED:  # BeforeSuite, AfterSuite...
                suite.append(f"{name} {status}: {why}")
            continue
        specs[name[5:]] = (status, why)
    return specs, suite, facts


def counts(specs):
    passed = sum(s == "passed" for s, _ in specs.values())
    failed = sum(s in NOT_PASSED for s, _ in specs.values())
    return passed, failed, len(specs) - passed - failed


def minutes(sec):
    return "?" if sec is None else f"{sec // 60}m{sec % 60:02d}s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-list", required=True)
    ap.add_argument("runs", nargs="+", help="VERSION:HANDLER:RUN_DIR")
    args = ap.parse_args()
    skips = load_skips(args.skip_list)

    runs = {}  # version -> handler -> (specs, suite, facts)
    for r in args.runs:
        ver, handler, run_dir = r.split(":", 2)
        runs.setdefault(ver, {})[handler] = read_run(run_dir)

    cols = [(v, h) for v in runs for h in ("wasmpod", "runc") if h in runs[v]]
    width = 24
    print("\ncritest v1.34.0 (Kubernetes CRI validation), per containerd and runtime handler")
    print(" " * width + "".join(f"{'containerd ' + v:<{width}}" for v in runs))
    print(" " * width + "".join(f"{h:<12}" for _, h in cols))

    def row(label, fn):
        print(f"{label:<{width}}" + "".join(f"{fn(*runs[v][h]):<12}" for v, h in cols))

    row("passed", lambda s, *_: str(counts(s)[0]) if s is not None else "-")
    row("failed", lambda s, *_: str(counts(s)[1]) if s is not None else "-")
    row("skipped", lambda s, *_: str(counts(s)[2]) if s is not None else "-")
    row("wall time", lambda s, q, f: minutes(f["wall"]))
    row('"inactive stream" lines', lambda s, q, f: "?" if f["inactive"] is None else str(f["inactive"]))
    row("leftovers killed", lambda s, q, f: str(f["leftovers"]))

    status, compared = 0, 0
    for ver, by in runs.items():
        for h, (specs, suite, _) in by.items():
            for problem in suite:
                print(f"\ncontainerd {ver}, {h}: suite problem: {problem}")
            if specs is None:
                status = 2
        if "runc" not in by or "wasmpod" not in by:
            continue
        runc, wasm = by["runc"][0], by["wasmpod"][0]
        if runc is None or wasm is None:
            continue
        compared += 1
        skipped_by_name = [n for n in runc if any(spec in n for _, spec, _ in skips)]
        missing = sorted(
            n for n, (s, _) in runc.items()
            if s == "passed" and wasm.get(n, ("not run", ""))[0] != "passed" and n not in skipped_by_name
        )
        print(f"\ncontainerd {ver}: {len(missing)} spec(s) pass under runc but not under wasmpod")
        for n in missing:
            s, why = wasm.get(n, ("not run", ""))
            print(f"  [{s}] {n}")
            if why:
                print(f"      {why[:300]}")
        extra = sorted(n for n, (s, _) in wasm.items() if s == "passed" and runc.get(n, ("",))[0] != "passed")
        for n in extra:
            print(f"  (passes under wasmpod only: {n})")
        if missing:
            status = max(status, 1)
    if skips:
        print("\nskipped by name (scripts/critest/skip.txt):")
        for who, spec, reason in skips:
            print(f"  [{who}] {spec}: {reason}")
    if status == 0 and not compared:
        print("\ncritest: no containerd had both a runc and a wasmpod run: nothing compared")
        return 0
    verdict = {0: "every spec that passes under runc passes under wasmpod",
               1: "wasmpod fails specs that pass under runc",
               2: "a run produced no result"}[status]
    print(f"\ncritest: {verdict}")
    return status


if __name__ == "__main__":
    sys.exit(main())
