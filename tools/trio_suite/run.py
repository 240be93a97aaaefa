"""Run trio's own test suite against ringtrio and report per module (`make trio-suite`).

    python tools/trio_suite/run.py                      # everything, the table, report.json
    python tools/trio_suite/run.py trio/_tests/test_sync.py   # only these (id prefixes)
    python tools/trio_suite/run.py --ci                 # the fast subset CI runs
    python tools/trio_suite/run.py --update-baseline    # rewrite the baseline from this run

See README.md next to this file for how to read the table and keep
exclusions.toml and the baseline up to date.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from rewrite import PACKAGE, prepare  # noqa: E402
from trio_suite_plugin import load_exclusions, match  # noqa: E402

BASELINE = HERE / "baseline"
OUTCOMES = ("passed", "missing", "behaviour", "deliberate", "n/a", "unclassified")

# trio's own pytest configuration (its pyproject.toml), as far as it bears on
# outcomes: warnings are errors, a passing xfail is a failure.  trio ignores
# PytestUnraisableExceptionWarning because of a pytest bug; so do we.  trio
# registers its marker redistributors_should_skip in the same file.
PYTEST_INI = """\
# Written by tools/trio_suite/run.py.
[pytest]
addopts = -p no:cacheprovider -p no:trio -p no:ringtrio -p no:asyncio -p no:randomly
          -p retargeted._tests.pytest_plugin -p trio_suite_plugin
          --run-slow -q -rN --tb=short --continue-on-collection-errors
timeout_method = thread
xfail_strict = true
markers =
    redistributors_should_skip: tests that should be skipped by downstream redistributors
filterwarnings =
    error
    ignore::pytest.PytestUnraisableExceptionWarning
"""


def _trio_root() -> Path:
    import trio  # the installed wheel: its tests are what we run

    return Path(trio.__file__).parent


def _read_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records.setdefault(record["id"], record)
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run_pytest(out: Path, selection: list[str], timeout: float, ci: bool) -> None:
    """Run pytest until every selected test has a record, restarting after a hang or crash."""
    results = out / "results.jsonl"
    log = out / "pytest.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(out)]),
        "TRIO_SUITE_OUT": str(out),
        "TRIO_SUITE_CI": "1" if ci else "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    targets = [PACKAGE + "/" + s[len("trio/") :] if s.startswith("trio/") else s for s in selection]
    command = [sys.executable, "-m", "pytest", f"--timeout={timeout:g}", *(targets or [PACKAGE])]
    # The in-process timeout (SIGALRM) ends a hang as a test failure; this one
    # is for a hang it cannot interrupt, or a crash.
    hard_limit = timeout + 60
    progress = 0
    for attempt in range(100):
        for name in ("finished", "current"):
            (out / name).unlink(missing_ok=True)
        with log.open("a") as log_file:
            log_file.write(f"\n===== attempt {attempt + 1}: {' '.join(command)}\n")
            log_file.flush()
            proc = subprocess.Popen(
                command, cwd=out, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
            killed = None
            while proc.poll() is None:
                time.sleep(0.25)
                current = _current(out)
                if current and time.time() - current["start"] > hard_limit:
                    killed = current["id"]
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        status = (out / "finished").read_text() if (out / "finished").exists() else None
        if status is not None and int(status) not in (2, 3):
            return  # 0, 1: ran to the end; 4, 5: usage error or nothing selected
        # Ended early: pytest-timeout's thread method ends the process at a
        # hang (a fresh process is safer than an exception thrown into a
        # wedged run loop), or a test crashed it or broke pytest itself
        # (exit status 2 or 3).
        current = _current(out)
        done = _read_jsonl(results)
        if current is None or current["id"] in done:
            if len(done) > progress:  # between two tests: start again from the next one
                progress = len(done)
                continue
            tail = log.read_text().splitlines()[-30:]
            sys.exit("trio-suite: pytest stopped outside a test:\n" + "\n".join(tail))
        attempt_log = log.read_text().rpartition("===== attempt")[2]
        if killed or "+ Timeout +" in attempt_log:
            limit = hard_limit if killed else timeout
            record = {"outcome": "behaviour", "kind": "hang", "exc_type": "",
                      "message": f"still running after {limit:g} s; the pytest process was ended"}
        else:
            why = f"exit status {proc.returncode}" if status is None else f"pytest exit status {status}"
            record = {"outcome": "behaviour", "kind": "crash", "exc_type": "",
                      "message": f"the pytest process stopped during this test ({why}); see pytest.log"}
        _append(results, {"id": current["id"], **record})
        progress = len(done) + 1
        print(f"trio-suite: {current['id']}: {record['message']}; carrying on", file=sys.stderr)
    sys.exit("trio-suite: too many hangs or crashes; see " + str(log))


def _current(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "current").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------


def module_of(test_id: str) -> str:
    return test_id.split("::", 1)[0]


def table(records: dict[str, dict[str, Any]]) -> tuple[str, dict[str, int]]:
    per_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for record in records.values():
        per_module[module_of(record["id"])][record["outcome"]] += 1
    totals: collections.Counter[str] = collections.Counter()
    for counts in per_module.values():
        totals.update(counts)
    show_unclassified = totals["unclassified"] > 0
    heads = ["module", "tests", "passed", "missing name", "behaviour", "deliberate", "n/a"]
    if show_unclassified:
        heads.append("unclassified")
    rows = []
    for module in sorted(per_module):
        c = per_module[module]
        row = [module.removeprefix("trio/"), sum(c.values()), c["passed"], c["missing"], c["behaviour"],
               c["deliberate"], c["n/a"]]
        rows.append(row + ([c["unclassified"]] if show_unclassified else []))
    total_row = ["total", sum(totals.values()), totals["passed"], totals["missing"], totals["behaviour"],
                 totals["deliberate"], totals["n/a"]]
    rows.append(total_row + ([totals["unclassified"]] if show_unclassified else []))
    widths = [max(len(str(r[i])) for r in [heads, *rows]) for i in range(len(heads))]

    def line(cells: list[Any]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    text = [line(heads), line(["-" * w for w in widths])]
    text += [line(r) for r in rows[:-1]]
    text += [line(["-" * w for w in widths]), line(rows[-1])]
    summary = {k: totals[k] for k in OUTCOMES}
    summary["tests"] = sum(totals.values())
    summary["applicable"] = summary["tests"] - totals["n/a"]
    return "\n".join(text), summary


def _normalise(message: str) -> str:
    message = re.sub(r"0x[0-9a-f]+", "0x…", message)
    message = re.sub(r"\d+(\.\d+)?", "N", message)
    return message[:90]


def clusters(records: dict[str, dict[str, Any]], top: int = 15) -> str:
    missing = collections.Counter(r["name"] for r in records.values() if r["outcome"] == "missing")
    behaviour = [r for r in records.values() if r["outcome"] == "behaviour"]
    by_kind = collections.Counter(r.get("kind", "") for r in behaviour)
    by_cause = collections.Counter(
        f"{r.get('exc_type') or r.get('kind')}: {_normalise(r.get('leaf') or r.get('message', ''))}"
        for r in behaviour
        if r.get("kind") not in ("hang", "crash")
    )
    out = ["", f"missing names ({sum(missing.values())} tests, {len(missing)} names), most used first:"]
    out += [f"  {n:4d}  {name}" for name, n in missing.most_common(top)]
    if len(missing) > top:
        out.append(f"        ... and {len(missing) - top} more names (report.json)")
    out.append(f"behaviour ({len(behaviour)} tests): " + ", ".join(f"{k} {n}" for k, n in by_kind.most_common()))
    for kind in ("hang", "crash", "internal-error"):
        ids = sorted(r["id"] for r in behaviour if r.get("kind") == kind)
        for test_id in ids:
            out.append(f"  {kind}: {test_id}")
    out.append("  most common causes:")
    out += [f"  {n:4d}  {cause}" for cause, n in by_cause.most_common(top)]
    deliberate = collections.Counter(r["reason"] for r in records.values() if r["outcome"] == "deliberate")
    if deliberate:
        out.append(f"deliberate differences ({sum(deliberate.values())} tests; docs/reference.md, Differences from trio):")
        out += [f"  {n:4d}  {reason}" for reason, n in deliberate.most_common()]
    unclassified = sorted(r["id"] for r in records.values() if r["outcome"] == "unclassified")
    if unclassified:
        out.append(f"unclassified ({len(unclassified)}): list each in exclusions.toml with its reason, or fix rules.toml:")
        for test_id in unclassified:
            r = records[test_id]
            out.append(f"  {test_id}: {r.get('kind')}: {r.get('name') or r.get('message', '')}")
    return "\n".join(out)


def read_baseline() -> set[str]:
    if not BASELINE.exists():
        return set()
    return {
        line.strip() for line in BASELINE.read_text().splitlines() if line.strip() and not line.startswith("#")
    }


def write_baseline(passed: list[str]) -> None:
    header = (
        "# trio tests that pass on ringtrio: tests/test_trio_suite.py fails when one stops passing.\n"
        "# Written by `make trio-suite UPDATE_BASELINE=1` (tools/trio_suite/run.py --update-baseline).\n"
    )
    BASELINE.write_text(header + "".join(f"{test_id}\n" for test_id in sorted(passed)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("selection", nargs="*", help="test ids or id prefixes (trio/_tests/test_sync.py, ...)")
    parser.add_argument("--ci", action="store_true", help="the fast subset: leave out exclusions.toml's [ci] tests")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per test (default 20)")
    parser.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from this (full) run")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "trio-suite", help="the build directory")
    args = parser.parse_args(argv)
    if args.update_baseline and (args.ci or args.selection):
        parser.error("--update-baseline needs a full run (no --ci, no selection)")
    timeout = args.timeout or 20.0

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    prepare(_trio_root(), out)
    (out / "pytest.ini").write_text(PYTEST_INI)
    for name in ("results.jsonl", "pytest.log"):
        (out / name).unlink(missing_ok=True)
    run_pytest(out, args.selection, timeout, args.ci)
    elapsed = time.monotonic() - started

    records = _read_jsonl(out / "results.jsonl")
    text, summary = table(records)
    print(text)
    applicable = summary["applicable"]
    share = f" ({100 * summary['passed'] / applicable:.0f}%)" if applicable else ""
    print(f"\n{summary['passed']} of {applicable} applicable tests pass{share}; "
          f"{summary['missing']} fail on a missing name, {summary['behaviour']} on behaviour, "
          f"{summary['deliberate']} on a deliberate difference; "
          f"{summary['n/a']} not applicable. {elapsed:.0f} s.")
    print(clusters(records))

    baseline = read_baseline()
    passed = sorted(i for i, r in records.items() if r["outcome"] == "passed")
    regressed = sorted(i for i in baseline if i in records and records[i]["outcome"] != "passed")
    new = sorted(set(passed) - baseline)
    stale = sorted(i for i in baseline if i not in records) if not (args.ci or args.selection) else []
    # Listed as deliberate differences, yet they pass: the entry is stale.
    deliberate = load_exclusions()[2]
    no_longer_different = sorted(i for i, r in records.items() if r["outcome"] == "passed" and match(deliberate, i))

    report = {
        "summary": summary,
        "elapsed_s": round(elapsed, 1),
        "ci_subset": args.ci,
        "selection": args.selection,
        "regressed": regressed,
        "newly_passing": new,
        "deliberate_but_passing": no_longer_different,
        "tests": [records[i] for i in sorted(records)],
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nper-test report: {out / 'report.json'}")

    status = 0
    if args.update_baseline:
        write_baseline(passed)
        print(f"baseline rewritten: {len(passed)} tests ({len(new)} added, "
              f"{len(baseline - set(passed))} removed)")
    else:
        if regressed:
            status = 1
            print(f"\nREGRESSION: {len(regressed)} tests in tools/trio_suite/baseline no longer pass:")
            for test_id in regressed:
                r = records[test_id]
                print(f"  {test_id}: {r['outcome']}: {r.get('exc_type', '')} {r.get('message', '')}".rstrip())
        if new:
            print(f"\n{len(new)} tests pass that are not in the baseline: record them with "
                  "`make trio-suite UPDATE_BASELINE=1`.")
        if stale:
            print(f"\n{len(stale)} baseline entries name tests that did not run (renamed or excluded): "
                  "`make trio-suite UPDATE_BASELINE=1` drops them.")
    if no_longer_different:
        print(f"\n{len(no_longer_different)} tests listed in exclusions.toml [deliberate] pass: "
              "remove their entries (and the difference from docs/reference.md if it is gone):")
        for test_id in no_longer_different:
            print(f"  {test_id}")
    if summary["unclassified"] and not args.ci:
        status = 1  # the CI subset guards the baseline; the lists are kept by full runs
    return status


if __name__ == "__main__":
    sys.exit(main())
