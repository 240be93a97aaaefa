"""Benchmarks comparing ringtrio with trio, asyncio and asyncio+uvloop.

Run ``python bench/run.py --help`` (or ``python -m bench --help``); the
methodology is described in ``bench/run.py`` and ``bench/README.md``.
"""
