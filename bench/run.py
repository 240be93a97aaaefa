"""Side-by-side benchmarks: ringtrio vs trio vs asyncio vs asyncio+uvloop.

    python bench/run.py [--rows a,b] [--libs ringtrio,trio,asyncio,uvloop,c]
                        [--servers a,b] [--repeat N] [--scale F] [--quick]
                        [--stat best|median] [--pin | --no-pin] [--cpu K]
                        [--json out.json]

There are two kinds of rows.  *Micro* rows (``_registry.ROWS``) run a body
inside each library's event loop, as described below.  *Network* rows
(``_net.ROWS``: ``tcp_echo_100``, ``tcp_echo_1``, ``idle_memory``) run an
echo server per library variant in its own process, driven by a load
generator written in C; see ``_net.py`` for their method.  Both are printed
by the same command, micro rows first.

Methodology
-----------
* Every (row, library) measurement runs in a fresh subprocess
  (``bench/_worker.py ROW LIB N``), so no library sees another's warm caches,
  leftover threads or garbage, and an import failure or crash in one library
  is contained in its own cell.
* The worker times only the benchmark body, with ``time.perf_counter`` inside
  the library's own run loop (``lib.run(main)`` for trio-like libraries,
  ``asyncio.Runner(loop_factory=...)`` for asyncio and uvloop).  Interpreter
  start-up, imports and loop set-up/tear-down are not measured.
* ``--pin`` (on by default) pins each worker to one CPU (the highest-numbered
  CPU this process may use, or ``--cpu K``) with ``os.sched_setaffinity``,
  before any import, so all of the worker's threads share that one CPU.
* Each cell is measured ``--repeat`` times (default 3).  Repeats are the
  outer loop and libraries the inner one, so a burst of noise on the machine
  lands on all libraries alike; the library order is also rotated each
  repeat so no library is always first/last.
* The reported number is the *best* (shortest) elapsed time of the repeats by
  default: on a noisy shared VM, noise only ever makes a run slower, so the
  minimum is the most reproducible estimate of what the code costs.
  ``--stat median`` reports the median instead.  All samples are kept in
  ``--json`` output.
* ops/s = N / elapsed, where N is the row's count times ``--scale``.
  Ratios compare ops/s, so ``trio/uvloop = 0.40x`` means trio does 40% of
  uvloop's throughput (higher is better).

Exit status is 0 unless every attempted run failed (or the arguments are bad).
"""

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _net  # noqa: E402
import _registry  # noqa: E402

WORKER = os.path.join(HERE, "_worker.py")
MIN_COL = 13  # minimum width of a library / ratio column


# ---------------------------------------------------------------- arguments


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv):
    all_rows = list(_registry.ROWS) + list(_net.ROWS)
    all_libs = list(_registry.LIBS) + ["c"]
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark ringtrio against trio, asyncio and uvloop.",
        epilog="rows: " + ", ".join(all_rows) + "; servers (network rows): "
        + ", ".join(_net.SERVER_LIBS),
    )
    parser.add_argument("--rows", type=_csv, default=all_rows,
                        help="comma-separated rows (default: all)")
    parser.add_argument("--libs", type=_csv, default=list(_registry.DEFAULT_LIBS) + ["c"],
                        help="comma-separated libraries (default: %(default)s; "
                        "'c' is the C io_uring echo server, network rows only)")
    parser.add_argument("--servers", type=_csv, default=None,
                        help="network rows: only these servers (default: every "
                        "server of the selected libraries)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="fresh-process runs per cell (default 3)")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply every row's op count (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: --scale 0.05 --repeat 1 unless given")
    parser.add_argument("--stat", choices=["best", "median"], default="best",
                        help="how to combine repeats (default: best)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="pin each worker to one CPU (default: on)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU to pin to (default: highest allowed CPU)")
    parser.add_argument("--baseline", default="uvloop",
                        help="library the ratio columns divide by (default: uvloop)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds before a worker is killed (default: 120)")
    parser.add_argument("--file-dir", metavar="DIR",
                        help="file rows: where their files live (default: $RINGTRIO_BENCH_DIR, "
                             "else the system temp dir; the file system type is reported)")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show failing workers' stderr")
    args = parser.parse_args(argv)
    if args.file_dir:
        # Read by bench/_files.py in every worker process.
        os.environ["RINGTRIO_BENCH_DIR"] = os.path.abspath(args.file_dir)

    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.scale is None:
        args.scale = 0.05 if args.quick else 1.0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    for row in args.rows:
        if row not in all_rows:
            parser.error(f"unknown row {row!r}; known: {', '.join(all_rows)}")
    for lib in args.libs:
        if lib not in all_libs:
            parser.error(f"unknown lib {lib!r}; known: {', '.join(all_libs)}")
    for server in args.servers or ():
        if server not in _net.SERVER_LIBS:
            parser.error(f"unknown server {server!r}; known: {', '.join(_net.SERVER_LIBS)}")
    if not args.rows or not args.libs:
        parser.error("need at least one row and one lib")
    # micro rows and their libraries; network rows and their servers
    args.micro_rows = [r for r in args.rows if r in _registry.ROWS]
    args.micro_libs = [lib for lib in args.libs if lib in _registry.LIBS]
    args.net_rows = [r for r in args.rows if r in _net.ROWS]
    args.servers = _net.servers_for(args.libs, args.servers)
    if args.micro_rows and not args.micro_libs:
        parser.error("micro rows need at least one of: " + ", ".join(_registry.LIBS))
    if args.net_rows and not args.servers:
        parser.error("network rows need at least one server")
    if args.pin and args.cpu is None:
        args.cpu = max(os.sched_getaffinity(0))
    if not args.pin:
        args.cpu = None
    return args


# ---------------------------------------------------------------- running


def run_worker(row, lib, n, cpu, timeout):
    """Run one measurement in a fresh process; always returns a dict."""
    cmd = [sys.executable, WORKER, row, lib, str(n)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr or ""
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        return {"ok": False, "error": f"Timeout: killed after {timeout:g}s",
                "stderr": stderr}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            if not result.get("ok"):
                result["stderr"] = proc.stderr
            return result
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    if proc.returncode < 0:
        how = f"worker killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"worker exited {proc.returncode}"
    return {"ok": False, "stderr": proc.stderr, "error": f"{how}: {tail[0]}"}


def measure(args):
    """Run every cell ``args.repeat`` times; return {(row, lib): cell}."""
    cells = {}
    if not args.micro_rows:
        return cells
    for row in args.micro_rows:
        n = max(1, round(_registry.ROWS[row].count * args.scale))
        for lib in args.micro_libs:
            has_body = _registry.body_for(row, lib) is not None
            cells[row, lib] = {"row": row, "lib": lib, "n": n, "samples": [],
                               "error": None if has_body else "n/a", "info": {}}

    total = sum(1 for c in cells.values() if c["error"] is None) * args.repeat
    done = 0
    for rep in range(args.repeat):
        shift = rep % len(args.micro_libs)
        order = args.micro_libs[shift:] + args.micro_libs[:shift]
        for row in args.micro_rows:
            for lib in order:
                cell = cells[row, lib]
                if cell["error"] is not None:  # n/a, or failed earlier: skip
                    continue
                done += 1
                result = run_worker(row, lib, cell["n"], args.cpu, args.timeout)
                if result.get("ok"):
                    cell["samples"].append(result["elapsed"])
                    cell["info"] = {k: result[k] for k in ("version", "loop", "module_file")
                                    if result.get(k) is not None}
                    note = f"{result['elapsed']:.4f}s"
                else:
                    cell["error"] = result["error"]
                    note = "FAILED: " + result["error"]
                    if args.verbose and result.get("stderr"):
                        note += "\n" + result["stderr"].rstrip()
                print(f"  [{done}/{total}] rep {rep + 1} {row:<20} {lib:<9} {note}",
                      file=sys.stderr, flush=True)
    for cell in cells.values():
        samples = cell["samples"]
        if cell["error"] is None and samples:
            cell["best"] = min(samples)
            cell["median"] = statistics.median(samples)
            cell["elapsed"] = cell[args.stat]
            cell["ops_per_s"] = cell["n"] / cell["elapsed"]
    return cells


# ---------------------------------------------------------------- reporting


def machine_info():
    info = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def fmt_rate(ops):
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if ops >= factor:
            return f"{ops / factor:.3g}{suffix}" if ops < 100 * factor else \
                f"{ops / factor:.0f}{suffix}"
    return f"{ops:.3g}"


def fmt_cell(cell):
    """Table text for one cell; errors show only their type (details below)."""
    if cell["error"] == "n/a":
        return "n/a"
    if cell["error"] is not None:
        kind = cell["error"].split(":", 1)[0]
        return "error: " + (kind if len(kind) <= 24 else kind[:21] + "...")
    return fmt_rate(cell["ops_per_s"]) + " ops/s"


def ratio_columns(libs, baseline):
    pairs = []
    if baseline in libs:
        pairs += [(lib, baseline) for lib in libs if lib != baseline]
    for a, b in (("ringtrio", "trio"), ("ringtrio-epoll", "trio"), ("ringtrio-epoll", "ringtrio")):
        if a in libs and b in libs and b != baseline:
            pairs.append((a, b))
    return pairs


def ratio(cells, row, num, den):
    a, b = cells[row, num], cells[row, den]
    if "ops_per_s" not in a or "ops_per_s" not in b:
        return None
    return a["ops_per_s"] / b["ops_per_s"]


def print_report(args, cells, info, net_cells=None, gen_cpu=None):
    print(f"ringtrio bench  {datetime.datetime.now():%Y-%m-%d %H:%M}")
    print(f"python   {info['python']}  ({info['python_executable']})")
    print(f"kernel   {info['kernel']} {info['machine']}, {info['cpus']} CPUs"
          + (f", {info['cpu_model']}" if info["cpu_model"] else ""))
    pin = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"method   {args.stat} of {args.repeat} fresh-process run(s) per cell, "
          f"scale {args.scale:g}, {pin}; higher is better")
    if any(row.startswith("file") for row in getattr(args, "micro_rows", [])):
        import _files

        print(f"files    in {_files.describe_dir()}")
    versions = []
    for lib in args.libs:
        if lib not in _registry.LIBS and not args.net_rows:
            continue  # "c" only takes part in network rows
        found = next((c["info"] for (_, l), c in cells.items() if l == lib and c["info"]), {})
        if not found and net_cells:
            found = next((c["result"]["info"] for (_, s), c in net_cells.items()
                          if _net.SERVER_LIBS[s] == lib and c.get("result")), {})
        extra = found.get("version") or "(no successful run)"
        versions.append(f"{lib} {extra}")
    print("libs     " + ", ".join(versions))
    if args.micro_rows:
        print()
        print_micro_table(args, cells)
    if args.net_rows:
        print()
        _net.print_report(args, args.net_rows, args.servers, net_cells, gen_cpu, fmt_rate)


def print_micro_table(args, cells):
    pairs = ratio_columns(args.micro_libs, args.baseline)
    header = ["row"] + args.micro_libs + [f"{a}/{b}" for a, b in pairs]
    table = [header]
    for row in args.micro_rows:
        line = [row] + [fmt_cell(cells[row, lib]) for lib in args.micro_libs]
        for a, b in pairs:
            r = ratio(cells, row, a, b)
            line.append("-" if r is None else f"{r:.2f}x")
        table.append(line)
    widths = [max(len(line[i]) for line in table) + 2 for i in range(len(header))]
    widths = [widths[0]] + [max(w, MIN_COL) for w in widths[1:]]
    for line in table:
        print("".join(text.ljust(w) for text, w in zip(line, widths)).rstrip())

    print()
    print("ops: " + "; ".join(f"{row} = {cells[row, args.micro_libs[0]]['n']:,} "
                              f"{_registry.ROWS[row].unit}" for row in args.micro_rows))
    errors = {}
    for (row, lib), cell in cells.items():
        if cell["error"] not in (None, "n/a"):
            errors.setdefault((lib, cell["error"]), []).append(row)
    if errors:
        print("errors:")
        for (lib, err), rows in errors.items():
            where = "all rows" if len(rows) == len(args.micro_rows) else ", ".join(rows)
            print(f"  {lib} ({where}): {err}")


def write_json(path, args, cells, info, net_cells=None, gen_cpu=None):
    doc = {
        "meta": dict(info, date=datetime.datetime.now().isoformat(timespec="seconds"),
                     stat=args.stat, repeat=args.repeat, scale=args.scale,
                     pinned_cpu=args.cpu, rows=args.rows, libs=args.libs,
                     baseline=args.baseline, servers=args.servers,
                     load_generator_cpu=gen_cpu),
        "results": [
            {k: cell.get(k) for k in ("row", "lib", "n", "samples", "best", "median",
                                      "elapsed", "ops_per_s", "error", "info")}
            for cell in cells.values()
        ],
        "net_results": _net.json_results(net_cells or {}),
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def _exit_on_sigterm(signum, frame):
    # turn SIGTERM into an exception, so that every ``finally`` runs and no
    # echo server or load generator outlives the harness
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    info = machine_info()
    cells = measure(args)
    net_cells, gen_cpu = {}, None
    if args.net_rows:
        net_cells, gen_cpu = _net.measure(args, args.net_rows, args.servers)
    print_report(args, cells, info, net_cells, gen_cpu)
    if args.json:
        write_json(args.json, args, cells, info, net_cells, gen_cpu)
        print(f"\nwrote {args.json}")
    attempted = [c for c in cells.values() if c["error"] != "n/a"] + list(net_cells.values())
    succeeded = [c for c in attempted if "ops_per_s" in c or c.get("result")]
    return 0 if succeeded or not attempted else 1


if __name__ == "__main__":
    sys.exit(main())
