"""The benchmark harness (issue 6): ``python -m bench``.

It starts a private redis-server and the service (one uvicorn worker, uvloop
and httptools) on free ports of 127.0.0.1, fills the store by writing Redis
directly in the service's own layout, drives the scenarios with ``wrk`` at 64
connections, quotes every figure as a ratio to a bare Starlette endpoint
(the yardstick, bench/yardstick.py) measured in the same run, and writes the
figures to bench/results/ as JSON and a PNG chart. Everything it starts, it
stops, also on Ctrl-C or an error.

Modules: procs (processes and free ports), wrk (running wrk and reading its
figures), fill (writing sessions straight into Redis), client (a small HTTP
client for setup and probes), report (table, targets, JSON, chart), machine
(what machine the figures came from), run (the scenarios, in order).
"""
