"""Network rows: TCP echo servers driven by a C load generator.

Unlike the micro rows, a network measurement is two processes:

* the **server** -- ``bench/_echo_server.py SERVER`` for the Python servers,
  or the C io_uring ceiling ``bench/.build/echo_uring`` -- listens on
  127.0.0.1 port 0, prints its port as a JSON line, and is pinned to the
  benchmark CPU (``--cpu``, default the highest allowed CPU);
* the **load generator** ``bench/.build/loadgen`` (``bench/loadgen.c``,
  epoll, one thread) is pinned to another CPU and prints one JSON line.

Both C programs are compiled on demand with the compiler Python was built
with (``sysconfig.get_config_var("CC")``, the one the native core uses), -O2,
into ``bench/.build/`` (git-ignored); a stamp with the hash of the source and
the command line makes them rebuild whenever either changes.

Rows:

* ``tcp_echo_100`` / ``tcp_echo_1``: ping-pong, 100 (or 1) connections x
  1 KiB; warm-up, then req/s and p50/p99 round-trip latency.  Also recorded:
  the CPU share the server and the load generator used, so a saturated load
  generator is visible.
* ``idle_memory``: the load generator opens N connections (each echoes one
  byte, so its handler is back in receive) and keeps them idle; the server's
  VmRSS (/proc/PID/status) is read before, at N/2 and at N.  Reported:
  (RSS(N) - RSS(0)) / N, and the marginal cost (RSS(N) - RSS(N/2)) / (N/2),
  which is flat if nothing grows with the number of connections.

The server is always killed (``finally``), whatever happens.
"""

import hashlib
import json
import os
import resource
import select
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass

from _echo_server import SERVERS

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = os.path.join(HERE, ".build")
ECHO_SERVER = os.path.join(HERE, "_echo_server.py")

# server name -> library, in table order (the servers live in _echo_server.py;
# "c" is the C io_uring ceiling, bench/echo_uring.c).
SERVER_LIBS = {name: lib for name, (lib, _) in SERVERS.items()}
CEILING = "c-uring"

SERVER_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class NetRow:
    kind: str  # "pingpong" or "idle"
    conns: int  # connections at --scale 1
    size: int = 1024  # message bytes (pingpong)
    legend: str = ""


ROWS = {
    "tcp_echo_100": NetRow("pingpong", 100, 1024,
                           "100 connections x 1 KiB ping-pong"),
    "tcp_echo_1": NetRow("pingpong", 1, 1024, "1 connection x 1 KiB ping-pong"),
    "idle_memory": NetRow("idle", 10_000, 1,
                          "server RSS per idle connection blocked in receive"),
}


def durations(scale):
    """(warm-up, measured) seconds for ping-pong rows at ``scale``."""
    return min(0.5, max(0.2, 0.5 * scale)), max(0.5, 3.0 * scale)


def idle_conns(row, scale):
    """Connections for the idle row at ``scale``, within RLIMIT_NOFILE."""
    n = max(500, round(row.conns * scale))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        n = min(n, hard - 64)
    return n


# ---------------------------------------------------------------- building


class BuildError(Exception):
    pass


def compiler():
    return shlex.split(sysconfig.get_config_var("CC") or "cc")


def build(name):
    """Compile bench/NAME.c to bench/.build/NAME if needed; return its path."""
    src = os.path.join(HERE, name + ".c")
    out = os.path.join(BUILD_DIR, name)
    cmd = compiler() + ["-O2", "-Wall", "-o", "{out}", src]
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read() + json.dumps(cmd).encode()).hexdigest()
    stamp = out + ".stamp"
    try:
        with open(stamp) as f:
            if f.read().strip() == key and os.access(out, os.X_OK):
                return out
    except OSError:
        pass
    os.makedirs(BUILD_DIR, exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    real = [tmp if part == "{out}" else part for part in cmd]
    proc = subprocess.run(real, capture_output=True, text=True)
    if proc.returncode != 0:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise BuildError(f"{shlex.join(real)} failed: {msg[0] if msg else proc.returncode}")
    os.replace(tmp, out)
    with open(stamp, "w") as f:
        f.write(key + "\n")
    return out


# ---------------------------------------------------------------- processes


class NetError(Exception):
    pass


def _read_json_line(proc, timeout, what):
    """The next line of ``proc``'s stdout, parsed; NetError on timeout/EOF."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NetError(f"{what}: no output after {timeout:g}s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise NetError(f"{what}: exited ({proc.wait()}) without output")
        line = line.decode(errors="replace").strip()
        if line.startswith("{"):
            return json.loads(line)


def _tail(fileobj):
    fileobj.seek(0)
    lines = fileobj.read().decode(errors="replace").strip().splitlines()
    return lines


def _cpu_ticks(pid):
    """utime + stime of ``pid`` in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise NetError("no VmRSS in /proc/PID/status")


def _kill(proc):
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class Server:
    """Context manager: start one echo server, pinned; always killed."""

    def __init__(self, name, cpu):
        self.name, self.cpu = name, cpu
        self.proc = None
        self.err = tempfile.TemporaryFile()

    def __enter__(self):
        try:
            if SERVER_LIBS[self.name] == "c":
                cmd = [build("echo_uring")]
            else:
                cmd = [sys.executable, ECHO_SERVER, self.name]
            if self.cpu is not None:
                cmd += ["--cpu", str(self.cpu)]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self.err)
            self.info = _read_json_line(self.proc, SERVER_START_TIMEOUT, "server")
            if "error" in self.info:
                raise NetError(self.info["error"])
            self.port = int(self.info["port"])
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def check_alive(self):
        """Raise NetError (with the server's last stderr line) if it died."""
        if self.proc.poll() is not None:
            lines = _tail(self.err)
            raise NetError(f"server exited ({self.proc.returncode}): "
                           + (lines[-1] if lines else "no stderr"))

    def fail(self, what):
        """Raise NetError for ``what`` (plus the server's last stderr line)."""
        self.check_alive()
        lines = _tail(self.err)
        raise NetError(what + (f" [server stderr: {lines[-1]}]" if lines else ""))

    def __exit__(self, *exc):
        _kill(self.proc)


def run_pingpong(server, row, scale, cpu, gen_cpu):
    warmup, duration = durations(scale)
    gen = build("loadgen")
    with Server(server, cpu) as srv:
        cmd = [gen, "pingpong", "--port", str(srv.port), "--conns", str(row.conns),
               "--size", str(row.size), "--warmup", str(warmup),
               "--duration", str(duration), "--server-pid", str(srv.proc.pid)]
        if gen_cpu is not None:
            cmd += ["--cpu", str(gen_cpu)]
        cpu0, t0 = _cpu_ticks(srv.proc.pid), time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=warmup + duration + 60)
        except subprocess.TimeoutExpired:
            srv.check_alive()
            raise NetError("load generator timed out") from None
        cpu1, t1 = _cpu_ticks(srv.proc.pid), time.monotonic()
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"error": proc.stderr.strip()}
        if "error" in result:
            srv.fail("loadgen: " + str(result["error"]))
        srv.check_alive()
        result["server_cpu"] = (cpu1 - cpu0) / (t1 - t0)
        # The server's CPU time over the measured window alone, per request:
        # what ranks servers when the load generator, not the server, sets
        # the pace (req/s cannot).
        srv_s = result.get("server_cpu_s", -1)
        result["cpu_us_per_req"] = (srv_s * 1e6 / result["requests"]
                                    if srv_s >= 0 and result["requests"] else None)
        result["info"] = srv.info
        return result


def run_idle(server, row, scale, cpu, gen_cpu):
    n = idle_conns(row, scale)
    gen_path = build("loadgen")
    gen = None
    with Server(server, cpu) as srv:
        try:
            time.sleep(0.2)
            rss = [_rss_kib(srv.proc.pid)]
            cmd = [gen_path, "idle", "--port", str(srv.port), "--conns", str(n),
                   "--steps", "2"]
            if gen_cpu is not None:
                cmd += ["--cpu", str(gen_cpu)]
            gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
            counts = [0]
            for _ in range(2):
                msg = _read_json_line(gen, 300, "load generator")
                if "error" in msg:
                    srv.fail("loadgen: " + msg["error"])
                time.sleep(0.3)  # let the last handlers get back into receive
                srv.check_alive()
                rss.append(_rss_kib(srv.proc.pid))
                counts.append(msg["connected"])
                gen.stdin.write(b"\n")
                gen.stdin.flush()
            _read_json_line(gen, 60, "load generator")
        finally:
            _kill(gen)
        half, full = counts[1], counts[2]
        return {
            "conns": full,
            "rss_kib": dict(zip(("0", str(half), str(full)), rss)),
            "bytes_per_conn": (rss[2] - rss[0]) * 1024 / full,
            "marginal_bytes_per_conn": (rss[2] - rss[1]) * 1024 / (full - half),
            "info": srv.info,
        }


def run_one(server, row_name, scale, cpu, gen_cpu):
    """One measurement; always returns a dict with ``ok``."""
    row = ROWS[row_name]
    try:
        fn = run_idle if row.kind == "idle" else run_pingpong
        return dict(fn(server, row, scale, cpu, gen_cpu), ok=True)
    except NetError as exc:  # already says what failed ("AttributeError: ...")
        return {"ok": False, "error": str(exc)}
    except (BuildError, OSError, ValueError, subprocess.SubprocessError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------- orchestration


def servers_for(libs, only=None):
    names = [s for s, lib in SERVER_LIBS.items() if lib in libs]
    if only:
        names = [s for s in only if s in SERVER_LIBS]
    return names


def generator_cpu(server_cpu):
    """CPU for the load generator: another allowed CPU than the server's."""
    if server_cpu is None:
        return None
    others = sorted(os.sched_getaffinity(0) - {server_cpu})
    return others[0] if others else None


def _key(row):
    # what "best" means: most req/s, or fewest bytes per connection
    if ROWS[row].kind == "idle":
        return lambda s: s["bytes_per_conn"]
    return lambda s: -s["rps"]


def measure(args, rows, servers):
    """Run every (row, server) ``args.repeat`` times, interleaved and rotated."""
    gen_cpu = generator_cpu(args.cpu)
    cells = {(r, s): {"row": r, "server": s, "samples": [], "error": None}
             for r in rows for s in servers}
    total = len(cells) * args.repeat
    done = 0
    for rep in range(args.repeat):
        shift = rep % len(servers)
        order = servers[shift:] + servers[:shift]
        for row in rows:
            for server in order:
                cell = cells[row, server]
                if cell["error"] is not None:
                    continue
                done += 1
                result = run_one(server, row, args.scale, args.cpu, gen_cpu)
                if result.pop("ok"):
                    cell["samples"].append(result)
                    if ROWS[row].kind == "idle":
                        note = f"{result['bytes_per_conn']:.0f} B/conn"
                    else:
                        note = (f"{result['rps']:.0f} req/s p99 {result['p99_us']:.0f}us"
                                f" cpu srv {result['server_cpu']:.2f}"
                                f" ({_us_per_req(result)} us/req)"
                                f" gen {result['cpu']:.2f}")
                else:
                    cell["error"] = result["error"]
                    note = "FAILED: " + result["error"]
                print(f"  [{done}/{total}] rep {rep + 1} {row:<20} {server:<13} {note}",
                      file=sys.stderr, flush=True)
    for (row, _), cell in cells.items():
        if cell["error"] is None and cell["samples"]:
            ranked = sorted(cell["samples"], key=_key(row))
            if args.stat == "best":
                cell["result"] = ranked[0]
            else:
                cell["result"] = ranked[(len(ranked) - 1) // 2]
    return cells, gen_cpu


# ---------------------------------------------------------------- reporting

SATURATED = 0.9  # load generator CPU share above which a cell is flagged


def _us_per_req(result):
    v = result.get("cpu_us_per_req")
    return "-" if v is None else f"{v:.2f}"


def _err(cell):
    kind = cell["error"].split(":", 1)[0]
    return "error: " + (kind if len(kind) <= 24 else kind[:21] + "...")


def _table(lines):
    widths = [max(len(line[i]) for line in lines) + 2 for i in range(len(lines[0]))]
    for line in lines:
        if len(line) == 1:  # an error line spans the row
            print((line[0]).rstrip())
            continue
        print("".join(text.ljust(w) for text, w in zip(line, widths)).rstrip())


def _ratio_targets(servers, baseline):
    targets = []
    # (asyncio: the epoll backend's target is to beat asyncio streams.)
    for name in (baseline, "trio", "asyncio", CEILING):
        if name in servers and name not in targets:
            targets.append(name)
    return targets


def print_report(args, rows, servers, cells, gen_cpu, fmt_rate):
    warmup, duration = durations(args.scale)
    where = ("not pinned" if args.cpu is None else
             f"server on CPU {args.cpu}, load generator on "
             + (f"CPU {gen_cpu}" if gen_cpu is not None else "the same CPU (only one allowed)"))
    print(f"network  {where}; C load generator ({shlex.join(compiler())} -O2); "
          f"{args.stat} of {args.repeat} run(s)")
    flagged = False
    for row in rows:
        spec = ROWS[row]
        print()
        if spec.kind == "idle":
            n = idle_conns(spec, args.scale)
            print(f"{row}: {spec.legend}, {n:,} connections (lower is better)")
            targets = [t for t in _ratio_targets(servers, args.baseline) if t != CEILING]
            lines = [["server", "bytes/conn", "marginal", "RSS idle", "RSS full"]
                     + [f"/{t}" for t in targets]]
            for s in servers:
                cell = cells[row, s]
                if "result" not in cell:
                    lines.append([s, _err(cell)] + [""] * (len(lines[0]) - 2))
                    continue
                r = cell["result"]
                rss = list(r["rss_kib"].values())
                line = [s, f"{r['bytes_per_conn']:,.0f}", f"{r['marginal_bytes_per_conn']:,.0f}",
                        f"{rss[0] / 1024:.1f} MiB", f"{rss[-1] / 1024:.1f} MiB"]
                for t in targets:
                    other = cells[row, t].get("result")
                    line.append(f"{r['bytes_per_conn'] / other['bytes_per_conn']:.2f}x"
                                if other and other["bytes_per_conn"] > 0 else "-")
                lines.append(line)
            _table(lines)
            print("  bytes/conn = (RSS at N - RSS before) / N; marginal = "
                  "(RSS at N - RSS at N/2) / (N/2); kernel socket memory is not in RSS")
        else:
            print(f"{row}: {spec.legend}, {duration:g} s after {warmup:g} s warm-up "
                  "(req/s: higher is better; latency in microseconds)")
            targets = _ratio_targets(servers, args.baseline)
            lines = [["server", "req/s", "srv us/req", "p50 us", "p99 us"]
                     + [f"/{t}" for t in targets] + ["srv cpu", "gen cpu"]]
            for s in servers:
                cell = cells[row, s]
                if "result" not in cell:
                    lines.append([s, _err(cell)] + [""] * (len(lines[0]) - 2))
                    continue
                r = cell["result"]
                line = [s, fmt_rate(r["rps"]), _us_per_req(r), f"{r['p50_us']:.0f}",
                        f"{r['p99_us']:.0f}"]
                for t in targets:
                    other = cells[row, t].get("result")
                    line.append(f"{r['rps'] / other['rps']:.2f}x" if other and other["rps"]
                                else "-")
                gen = f"{r['cpu'] * 100:.0f}%"
                if r["cpu"] >= SATURATED:
                    gen += " !"
                    flagged = True
                line += [f"{r['server_cpu'] * 100:.0f}%", gen]
                lines.append(line)
            _table(lines)
        errors = {}
        for s in servers:
            cell = cells[row, s]
            if cell["error"] is not None:
                errors.setdefault(cell["error"], []).append(s)
        for err, who in errors.items():
            print(f"  error ({', '.join(who)}): {err}")
    if flagged:
        print()
        print(f"! the load generator used >= {SATURATED:.0%} of its CPU: that cell is (close "
              "to) limited by the load generator's side of the kernel TCP path, not by the "
              "server alone.")


def json_results(cells):
    return [{"row": c["row"], "server": c["server"], "samples": c["samples"],
             "result": c.get("result"), "error": c["error"]} for c in cells.values()]
