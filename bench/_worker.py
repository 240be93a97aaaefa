"""Run ONE measurement in this (fresh) process and print one JSON line.

    python bench/_worker.py ROW LIB N [--cpu K]

``--cpu K`` pins the process to CPU ``K`` with ``os.sched_setaffinity``
before anything else is imported, so every thread the library later starts
(e.g. to_thread workers) inherits the same single-CPU affinity.

The JSON line always has ``row``, ``lib``, ``n`` and ``ok``.  On success it
also has ``elapsed`` (seconds, body only) and identification of what ran
(``version``, ``loop`` or ``module_file``); on failure it has ``error``
("ExceptionType: message") and the traceback goes to stderr.  The exit
status is 0 on success and 1 on failure.  run.py is the only intended caller.
"""

import argparse
import gc
import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _leaf(exc):
    """The first non-group exception inside (possibly nested) groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc):
    leaf = _leaf(exc)
    text = f"{type(leaf).__name__}: {leaf}".strip()
    return text.rstrip(":")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row")
    parser.add_argument("lib")
    parser.add_argument("n", type=int)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)

    result = {"row": args.row, "lib": args.lib, "n": args.n, "pid": os.getpid()}
    try:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
            result["cpu"] = args.cpu
        # bench/ is sys.path[0] already; the repo root comes right after so
        # that `import ringtrio` benchmarks this working tree.
        if ROOT not in sys.path:
            sys.path.insert(1, ROOT)
        import _registry

        body = _registry.body_for(args.row, args.lib)
        if body is None:
            raise NotImplementedError(f"{args.row} has no {args.lib} version")
        gc.collect()
        result.update(_registry.run_body(args.lib, body, args.n))
        result["ok"] = True
    except BaseException as exc:  # report everything, including groups
        traceback.print_exc()
        result["ok"] = False
        result["error"] = describe(exc)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
