"""Run AnyIO's own test suite on trio and on ringtrio, in one run (`make anyio-suite`).

    python tools/anyio_suite/run.py                     # the whole suite, the table
    python tools/anyio_suite/run.py --ci                # the CI guard (see below)
    python tools/anyio_suite/run.py -- -k test_sockets  # extra pytest arguments

AnyIO's tests come from its source distribution on PyPI, for the AnyIO
version installed here, downloaded with pip into build/anyio-suite/ (never
committed).  pytest runs them with AnyIO's own configuration (its
pyproject.toml: warnings are errors, a 20 s timeout per test) and with
"ringtrio" added to AnyIO's backend list, so every test parametrized by
``anyio_backend`` runs on "trio" and on "ringtrio" side by side; the
asyncio variants are left out (see anyio_suite_plugin.py).

The table: passed / failed / skipped per backend, then every test that
passes on trio but not on ringtrio.  Those listed in exclusions.toml (tests
that depend on trio's internals, each with its reason) are shown apart; any
other one is a regression and makes the exit status 1.  ``--ci`` runs the
trio and ringtrio variants of the whole suite but the tests [ci_skip] in
exclusions.toml names (too timing-sensitive for a loaded 2-core machine),
without the backend-independent tests (AnyIO's pytest-plugin tests running
pytest in pytest, its lazy-import install test: more than half the suite's
time, and they run on neither backend, so they cannot fail the
comparison): that is what tests/test_anyio_suite.py runs in `make test`.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = ROOT / "build" / "anyio-suite"
EXCLUSIONS = HERE / "exclusions.toml"

sys.path.insert(0, str(HERE))
from anyio_suite_plugin import test_key  # noqa: E402


def anyio_version() -> str:
    return importlib.metadata.version("anyio")


def fetch_sdist(version: str) -> Path:
    """AnyIO's source tree for ``version`` under build/ (downloaded once)."""
    tree = BUILD / f"anyio-{version}"
    if (tree / "tests" / "conftest.py").exists():
        return tree
    BUILD.mkdir(parents=True, exist_ok=True)
    archive = BUILD / f"anyio-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", "--dest", str(BUILD), f"anyio=={version}"],
            check=True,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(BUILD, filter="data")
    return tree


def load_exclusions() -> dict[str, dict[str, str]]:
    """{"excluded": ..., "core": ..., "ci_skip": ...}: test key -> reason."""
    data = tomllib.loads(EXCLUSIONS.read_text())
    return {section: dict(data.get(section, {})) for section in ("excluded", "core", "ci_skip")}


# Run inside the pytest subprocess (``python run.py --pytest ...``); the
# plugin adds "ringtrio" to AnyIO's backend list before AnyIO's conftest is
# imported.
def _pytest_main(args: list[str]) -> int:
    import pytest

    import anyio_suite_plugin

    return int(pytest.main(args, plugins=[anyio_suite_plugin]))


# A test that hangs is ended by pytest-timeout's thread method, which ends
# the whole pytest process (its signal method cannot interrupt every event
# loop); the run then resumes after that test, a bounded number of times.
PER_TEST_TIMEOUT = 60
MAX_RESTARTS = 20


def run_suite(
    tree: Path, results: Path, skip_keys: list[str], extra: list[str], *, common: bool = True
) -> None:
    args = [
        sys.executable, str(Path(__file__)), "--pytest",
        "-p", "no:cacheprovider", "-p", "no:ringtrio", "-p", "no:randomly",
        "-q", "-rN", "--tb=short", "-o", "console_output_style=classic",
        f"--timeout={PER_TEST_TIMEOUT}", "--timeout-method=thread",
        f"--anyio-suite-results={results}",
    ]
    if not common:
        args.append("--anyio-suite-no-common")
    if skip_keys:
        skip_file = results.with_suffix(".skip")
        skip_file.write_text("\n".join(skip_keys))
        args.append(f"--anyio-suite-skip={skip_file}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(tree)]))
    # Extra arguments that name tests replace the default: the whole suite.
    paths = [] if any(a.startswith("tests") for a in extra) else ["tests"]
    done_file = results.with_suffix(".done")
    hung: set[str] = set()
    for _attempt in range(MAX_RESTARTS + 1):
        done_file.write_text("\n".join(fold(results)))
        subprocess.run(
            [*args, f"--anyio-suite-done={done_file}", *extra, *paths], cwd=tree, env=env
        )
        now_hung = {n for n, e in fold(results).items() if e["outcome"] == "hung"}
        if now_hung <= hung:
            return  # finished (or ended without a new hung test: report what we have)
        hung = now_hung


def fold(results: Path) -> dict[str, dict[str, Any]]:
    """One outcome per test from the JSON lines: failed if any phase
    failed, skipped if skipped, "hung" if it started and never reported."""
    folded: dict[str, dict[str, Any]] = {}
    if not results.exists():
        return folded
    for line in results.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a process that was ended mid-write
        nodeid = record["nodeid"]
        if record["event"] == "start":
            folded[nodeid] = {"backend": record["backend"], "outcome": "hung", "duration": 0.0}
            continue
        entry = folded.setdefault(nodeid, {"backend": "common", "outcome": "hung", "duration": 0.0})
        entry["duration"] += record["duration"]
        outcome = record["outcome"]
        if entry["outcome"] == "hung":
            entry["outcome"] = "passed"
        if outcome == "failed":
            if entry["outcome"] != "failed":
                entry["message"] = record.get("message", "")
            entry["outcome"] = "failed"
        elif outcome in ("skipped", "xfailed") and entry["outcome"] == "passed":
            entry["outcome"] = outcome
        if record["event"] != "teardown" and entry["outcome"] == "passed":
            entry["outcome"] = "hung"  # not finished until its teardown reported
    return folded


def recheck(
    tree: Path, results: dict[str, dict[str, Any]], results_path: Path, lists: dict[str, dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """Run the tests that passed on trio and not on ringtrio once more, both
    variants, on their own; keep the second outcome.  A test that fails
    because the machine was busy at that moment passes then; a real
    regression fails again.  (The CI guard must pass every time on a noisy
    2-core machine, and must still catch what ringtrio broke.)"""
    listed = {key for keys in lists.values() for key in keys}
    suspects = [k for k in summarize(results)["worse"] if k not in listed]
    if not suspects:
        return results
    nodeids = [n for n in results if test_key(n) in suspects and results[n]["backend"] in ("trio", "ringtrio")]
    print(f"\nRe-running {len(suspects)} test(s) that passed on trio only: {', '.join(suspects)}")
    second = results_path.with_suffix(".recheck.jsonl")
    second.unlink(missing_ok=True)
    run_suite(tree, second, [], nodeids)
    rerun = fold(second)
    merged = dict(results)
    for nodeid, entry in rerun.items():
        merged[nodeid] = {**entry, "rechecked": True}
    return merged


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_key: dict[str, dict[str, list[str]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for nodeid, entry in results.items():
        counts[entry["backend"]][entry["outcome"]] += 1
        by_key[test_key(nodeid)][entry["backend"]].append(entry["outcome"])
    # A key "passes on trio but not on ringtrio" when every trio variant
    # passed and some ringtrio variant did not.
    worse: list[str] = []
    for key, outcomes in by_key.items():
        trio, ringtrio = outcomes.get("trio"), outcomes.get("ringtrio")
        if trio and ringtrio and all(o == "passed" for o in trio):
            if any(o != "passed" for o in ringtrio):
                worse.append(key)
    return {"counts": counts, "worse": sorted(worse)}


def print_table(
    results: dict[str, dict[str, Any]], lists: dict[str, dict[str, str]], seconds: float, *, common: bool = True
) -> int:
    summary = summarize(results)
    counts = summary["counts"]
    print()
    print(f"AnyIO {anyio_version()} test suite, trio and ringtrio in one run ({seconds:.0f} s)")
    print()
    print("| backend | passed | failed | hung | skipped | xfailed | total |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for backend in ("trio", "ringtrio", "common"):
        c = counts.get(backend, collections.Counter())
        print(
            f"| {backend} | {c['passed']} | {c['failed']} | {c['hung']} | {c['skipped']} | "
            f"{c['xfailed']} | {sum(c.values())} |"
        )
    if common:
        print("\n(common: backend-independent tests, run once)")
    else:
        print("\n(common: backend-independent tests, left out by --ci: they compare no backends)")
    labels = {"excluded": "excluded", "core": "core gap", "ci_skip": "timing"}
    listed = {key: (section, reason) for section, keys in lists.items() for key, reason in keys.items()}
    regressions = [k for k in summary["worse"] if k not in listed]
    print(f"\nPass on trio but not on ringtrio: {len(summary['worse'])}")
    for key in summary["worse"]:
        if key in listed:
            section, reason = listed[key]
            print(f"  {labels[section]:9} {key}\n            ({reason})")
    for key in regressions:
        messages = [
            e.get("message", "") for n, e in results.items()
            if test_key(n) == key and e["backend"] == "ringtrio" and e["outcome"] != "passed"
        ]
        print(f"  FAILING   {key}\n            {messages[0] if messages else ''}")
    common_failed = sorted(n for n, e in results.items() if e["backend"] == "common" and e["outcome"] == "failed")
    if common_failed:
        print(f"\nBackend-independent tests that failed ({len(common_failed)}):")
        for nodeid in common_failed:
            print(f"  {nodeid}: {results[nodeid].get('message', '')}")
    ran = {test_key(n) for n, e in results.items() if e["backend"] == "ringtrio"}
    stale = sorted(
        k for k in (*lists["excluded"], *lists["core"]) if k in ran and k not in summary["worse"]
    )
    if stale:
        print("\nExcluded but not failing on ringtrio in this run (remove them if they stay so):")
        for key in stale:
            print(f"  {key}")
    return 1 if regressions else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--pytest":
        return _pytest_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ci", action="store_true", help="leave out the [ci_skip] and the backend-independent tests"
    )
    parser.add_argument("--results", default=str(BUILD / "results.jsonl"), help="where the outcomes go")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    options = parser.parse_args()
    tree = fetch_sdist(anyio_version())
    lists = load_exclusions()
    results_path = Path(options.results).resolve()
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.unlink(missing_ok=True)
    started = time.monotonic()
    run_suite(
        tree, results_path, sorted(lists["ci_skip"]) if options.ci else [], options.pytest_args,
        common=not options.ci,
    )
    seconds = time.monotonic() - started
    results = fold(results_path)
    if not results:
        print("pytest produced no results (collection failed?)", file=sys.stderr)
        return 2
    if options.ci:
        results = recheck(tree, results, results_path, lists)
    Path(results_path.with_suffix(".summary.json")).write_text(json.dumps(results, indent=1, sort_keys=True))
    return print_table(results, lists, seconds, common=not options.ci)


if __name__ == "__main__":
    sys.exit(main())
