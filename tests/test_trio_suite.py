"""trio's own test suite, retargeted to ringtrio: no test in the baseline may stop passing.

Runs the fast subset of `make trio-suite` (tools/trio_suite/run.py --ci: every
trio test except exclusions.toml's not-applicable and [ci] lists) in a
subprocess, the way a developer runs it, and checks its report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tools" / "trio_suite" / "run.py"


def test_trio_suite_baseline_still_passes(tmp_path: Path) -> None:
    out = tmp_path / "trio-suite"
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--ci", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    baseline = {
        line.strip()
        for line in (ROOT / "tools" / "trio_suite" / "baseline").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    outcomes = {t["id"]: t["outcome"] for t in report["tests"]}
    ran = baseline & outcomes.keys()
    # The subset really ran the baseline (not an empty or broken run) ...
    assert len(ran) > len(baseline) // 2, output
    # ... and every baseline test in it passed.
    assert report["regressed"] == [], (
        "trio tests that passed on ringtrio no longer do (see the REGRESSION list);"
        " fix them, or if the change is deliberate, run `make trio-suite UPDATE_BASELINE=1`\n" + output
    )
    assert proc.returncode == 0, output
    # A fix elsewhere can let a test run on into a trio internal: that needs a
    # line in exclusions.toml, but is no regression, so it does not fail here.
    if report["summary"]["unclassified"]:
        warnings.warn(
            f"{report['summary']['unclassified']} trio tests are unclassified (they reached a trio "
            "internal): list them in tools/trio_suite/exclusions.toml (make trio-suite says which)",
            stacklevel=1,
        )
    if report["newly_passing"]:
        warnings.warn(
            f"{len(report['newly_passing'])} trio tests now pass on ringtrio but are not in "
            "tools/trio_suite/baseline: record them with `make trio-suite UPDATE_BASELINE=1`: "
            + ", ".join(report["newly_passing"][:10]),
            stacklevel=1,
        )


def _exclusions() -> dict[str, dict[str, str]]:
    import tomllib

    return tomllib.loads((ROOT / "tools" / "trio_suite" / "exclusions.toml").read_text())


def test_every_deliberate_difference_is_in_the_reference() -> None:
    """A trio test listed as failing on a deliberate difference names the
    bullet of docs/reference.md's "Differences from trio" that says what
    the difference is and why."""
    import re

    reference = (ROOT / "docs" / "reference.md").read_text()
    section = reference[reference.index("\n# Differences from trio") :]
    titles = {t.rstrip(".:") for t in re.findall(r"^\* \*\*(.+?)\*\*", section, re.MULTILINE)}
    deliberate = _exclusions()["deliberate"]
    assert deliberate
    for test_id, reason in deliberate.items():
        cited = re.match(r"\*\*(.+?)\*\*", reason)
        assert cited is not None, f"{test_id}: the reason must start with a bullet's bold title"
        assert cited[1].rstrip(".:") in titles, f"{test_id}: no bullet **{cited[1]}** in Differences from trio"


def test_patch_targets_name_ringtrio_knobs() -> None:
    """rules.toml's [patch_targets] send trio's tests' mock.patch of a
    trio-private knob to ringtrio's knob of the same name, which must exist;
    rewrite.py puts the ringtrio name in the copy."""
    import importlib
    import tomllib

    sys.path.insert(0, str(RUNNER.parent))
    try:
        from rewrite import rewrite_source
    finally:
        sys.path.remove(str(RUNNER.parent))
    targets = tomllib.loads((RUNNER.parent / "rules.toml").read_text())["patch_targets"]
    assert targets
    for trio_name, ringtrio_name in targets.items():
        module, _, attr = ringtrio_name.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), ringtrio_name
        source = f"with mock.patch({trio_name!r}, new=False):\n    pass\n"
        rewritten = rewrite_source(source, "trio._tests.test_x")
        assert f"mock.patch({ringtrio_name!r}, new=False)" in rewritten and repr(trio_name) not in rewritten


def test_warning_filters_naming_trio_classes_name_ringtrios() -> None:
    """A warning filter in trio's tests that names a trio warning class
    (pytest imports it from real trio, whose warnings ringtrio never raises)
    names ringtrio's class of the same name in the copy; other strings stay."""
    sys.path.insert(0, str(RUNNER.parent))
    try:
        from rewrite import rewrite_source
    finally:
        sys.path.remove(str(RUNNER.parent))
    source = (
        'pytestmark = pytest.mark.filterwarnings("ignore:.*UnboundedQueue:trio.TrioDeprecationWarning")\n'
        'x = "error::trio.TrioDeprecationWarning"\n'
        'y = "ignore:not a filter"\n'
        'z = "trio.TrioDeprecationWarning"\n'
    )
    rewritten = rewrite_source(source, "trio._core._tests.test_x").splitlines()
    # (The first line also gets the module's __name__: see rewrite.py.)
    assert [line.rpartition("; ")[2] for line in rewritten] == [
        "pytestmark = pytest.mark.filterwarnings('ignore:.*UnboundedQueue:ringtrio.TrioDeprecationWarning')",
        "x = 'error::ringtrio.TrioDeprecationWarning'",
        'y = "ignore:not a filter"',
        'z = "trio.TrioDeprecationWarning"',
    ]
    # The class named is one ringtrio has.
    import ringtrio

    assert issubclass(ringtrio.TrioDeprecationWarning, FutureWarning)
