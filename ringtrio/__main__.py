"""``python -m ringtrio``: the async REPL, or a program run in trio mode.

    python -m ringtrio                              an interactive console with top-level await
    python -m ringtrio --trio-mode                  the same, with `trio` meaning ringtrio
    python -m ringtrio --trio-mode app.py [args]    run app.py as __main__ in trio mode
    python -m ringtrio --trio-mode -m pkg [args]    run module pkg as __main__ in trio mode
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import NoReturn

USAGE = """\
usage: python -m ringtrio [--trio-mode]
       python -m ringtrio --trio-mode SCRIPT [ARG ...]
       python -m ringtrio --trio-mode -m MODULE [ARG ...]"""

HELP = f"""{USAGE}

With no arguments: an interactive console whose statements run in one
ringtrio run, so `await` works at the top level (as `python -m trio`).

options:
  -h, --help    show this help and exit
  --trio-mode   enable trio mode first (`import ringtrio.trio_mode`): `import trio`
                gives ringtrio, and sniffio reports "trio" inside the run, so
                libraries written for trio run on ringtrio (docs/ecosystem.md)
  SCRIPT        with --trio-mode: run this file as __main__, with ARGs as sys.argv[1:]
  -m MODULE     with --trio-mode: run this module as __main__ (as `python -m`)
"""


def usage_error(message: str) -> NoReturn:
    print(f"{USAGE}\npython -m ringtrio: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    trio_mode = False
    script: str | None = None
    module: str | None = None
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("-h", "--help"):
            print(HELP, end="")
            return
        if arg == "--trio-mode":
            trio_mode = True
        elif arg == "-m":
            if i + 1 == len(argv):
                usage_error("-m needs the name of a module to run")
            module, rest = argv[i + 1], argv[i + 2 :]
            break
        elif arg.startswith("-"):
            usage_error(f"unknown option {arg!r}")
        else:
            script, rest = arg, argv[i + 1 :]
            break
    target = script if script is not None else module
    if target is not None and not trio_mode:
        usage_error(
            f"running {target!r} needs --trio-mode (python -m ringtrio --trio-mode ...); "
            "without it, run the program with python itself"
        )
    if trio_mode:
        import ringtrio.trio_mode  # noqa: F401 - the switch

    if script is not None:
        if not os.path.exists(script):
            usage_error(f"can't open file {script!r}: no such file")
        sys.argv = [script, *rest]
        # As `python app.py`: the script's directory comes first on the path.
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    elif module is not None:
        sys.argv = [module, *rest]
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        from ._repl import main as repl

        repl(trio_mode)


if __name__ == "__main__":
    main(sys.argv[1:])
