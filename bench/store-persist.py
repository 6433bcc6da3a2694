#!/usr/bin/env python3
"""Messages persisted per second through ringchat's store backends, side by side with
redis-benchmark's XADD at the same pipeline depth (the floor).

    bench/store-persist.py              # RUNS=5: the real measurement, a few minutes
    bench/store-persist.py --smoke      # 1 small run per case, for CI; also SMOKE=1

Environment: RUNS (default 5), DEPTHS (default "1,16,64"), MESSAGES (default 200000 at depth 1,
1000000 above), DATA_DIR (where the embedded store and Redis's AOF live; default the system
temp dir), REDIS_SERVER / REDIS_BENCHMARK (binaries).

Every case runs the client pinned to CPU 0 and redis-server pinned to CPU 1 (BENCH.md), and
reports messages per wall-second, per CPU-second of redis-server (the shared server's cost per
message: it should not depend on who sends), and per CPU-second of the client process (what
ringchat's own code costs, against redis-benchmark's hand-written C client). Rounds are
interleaved (ringchat-uring, ringchat-epoll, redis-benchmark, then again) so a noisy neighbour
hits every side alike. Redis runs as the reference deploys it: `appendonly yes`, `appendfsync
everysec`; the AOF is rewritten between runs so it never grows without bound, and automatic
rewrites are off so none lands inside a window.

The embedded store is measured on its own (no peer does the same work): each append is acked
only after the SQLite transaction holding it committed with `synchronous=FULL` (an fsync per
group commit), in-process on one core-like runtime plus the storage thread, pinned to CPU 0.
"""

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--smoke" in sys.argv[1:] or os.environ.get("SMOKE") == "1"
RUNS = 1 if SMOKE else int(os.environ.get("RUNS", "5"))
DEPTHS = [int(d) for d in os.environ.get("DEPTHS", "1,16,64").split(",")]
CONTENT_BYTES = 64
TICKS = os.sysconf("SC_CLK_TCK")


def messages_for(depth):
    if SMOKE:
        return 2000
    if "MESSAGES" in os.environ:
        return int(os.environ["MESSAGES"])
    return 50_000 if depth == 1 else 1_000_000


def embedded_messages_for(depth):
    """Each embedded ack waits for an fsync; keep the depth-1 window a few seconds long."""
    if SMOKE:
        return 2000
    return 20_000 if depth == 1 else 200_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def redis_command(port, *args):
    """Sends one command and returns the raw reply (small replies only)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(out)
        return s.recv(1 << 16)


def wait_rewrite_done(port):
    for _ in range(600):
        info = redis_command(port, "INFO", "persistence")
        if b"aof_rewrite_in_progress:0" in info and b"aof_rewrite_scheduled:0" in info:
            return
        time.sleep(0.1)
    raise SystemExit("redis AOF rewrite did not finish")


def run_client(argv):
    """Runs argv; returns (wall seconds, client CPU seconds, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def parse_kv(line):
    return dict(p.split("=", 1) for p in line.split())


def payload():
    return '{"content":"%s","timestamp":1700000000000,"user_id":1}' % ("x" * CONTENT_BYTES)


def main():
    persist = os.path.join(ROOT, "target", "release", "store-persist")
    redis_server = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    redis_benchmark = os.environ.get("REDIS_BENCHMARK") or shutil.which("redis-benchmark")
    if not (redis_server and redis_benchmark):
        raise SystemExit("redis-server and redis-benchmark are needed (apt-get install redis-server)")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-q", "-p", "ringchat-bench", "--bin", "store-persist"],
        cwd=ROOT,
        check=True,
    )
    base = os.environ.get("DATA_DIR") or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="store-persist-", dir=base)
    port = free_port()
    redis = subprocess.Popen(
        ["taskset", "-c", "1", redis_server, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
         "--auto-aof-rewrite-percentage", "0", "--dir", work, "--logfile", os.path.join(work, "redis.log")],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if redis_command(port, "PING").startswith(b"+PONG"):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("redis-server did not start")
        version = redis_command(port, "INFO", "server").split(b"redis_version:")[1].split(b"\r")[0].decode()
        url = f"redis://127.0.0.1:{port}"
        results = {}  # (side, depth) -> list of dicts

        def record(side, depth, messages, wall, client_cpu, server_cpu, extra=None):
            row = {"messages": messages, "wall": wall, "client_cpu": client_cpu, "server_cpu": server_cpu}
            row.update(extra or {})
            results.setdefault((side, depth), []).append(row)

        for run in range(RUNS):
            for depth in DEPTHS:
                n = messages_for(depth)
                for side in ("ringchat-uring", "ringchat-epoll", "redis-benchmark"):
                    redis_command(port, "DEL", "bench:persist", "bench:rb")
                    redis_command(port, "BGREWRITEAOF")
                    wait_rewrite_done(port)
                    s0 = cpu_ticks(redis.pid)
                    if side == "redis-benchmark":
                        wall, cpu, _ = run_client(
                            ["taskset", "-c", "0", redis_benchmark, "-h", "127.0.0.1", "-p", str(port),
                             "-c", "1", "-P", str(depth), "-n", str(n), "-q",
                             "XADD", "bench:rb", "*", "payload", payload()])
                        stored = int(redis_command(port, "XLEN", "bench:rb")[1:].split(b"\r")[0])
                        extra = None
                    else:
                        io = side.split("-")[1]
                        wall, cpu, out = run_client(
                            ["taskset", "-c", "0", persist, "--backend", "redis", "--url", url, "--io", io,
                             "--in-flight", str(depth), "--messages", str(n), "--content", str(CONTENT_BYTES)])
                        kv = parse_kv(out.strip().splitlines()[-1])
                        stored = int(redis_command(port, "XLEN", "bench:persist")[1:].split(b"\r")[0])
                        extra = {k: int(kv[k]) for k in ("p50_us", "p99_us", "max_us")}
                    # redis-benchmark sends whole pipelines, so it may round n up to a multiple
                    # of the depth; the count that Redis stored is what was done.
                    if stored < n or (side != "redis-benchmark" and stored != n):
                        raise SystemExit(f"{side} depth {depth}: {stored} entries stored, {n} sent")
                    server_cpu = (cpu_ticks(redis.pid) - s0) / TICKS
                    record(side, depth, stored, wall, cpu, server_cpu, extra)
                dirpath = tempfile.mkdtemp(prefix="embedded-", dir=work)
                wall, cpu, out = run_client(
                    ["taskset", "-c", "0", persist, "--backend", "embedded", "--dir", dirpath,
                     "--in-flight", str(depth), "--messages", str(embedded_messages_for(depth)), "--content", str(CONTENT_BYTES)])
                kv = parse_kv(out.strip().splitlines()[-1])
                record("embedded", depth, int(kv["messages"]), wall, cpu, 0.0,
                       {k: int(kv[k]) for k in ("p50_us", "p99_us", "max_us")})
                shutil.rmtree(dirpath)
            print(f"round {run + 1}/{RUNS} done", file=sys.stderr)
        import contextlib
        import io
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            report(results, version)
        print(text.getvalue())
        if not SMOKE:
            write_results(text.getvalue())
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)


def write_results(table):
    day = time.strftime("%Y-%m-%d", time.gmtime())
    path = os.path.join(ROOT, "bench", "results", f"store-persist-{day}.md")
    if os.path.exists(path):
        path = path[:-3] + time.strftime("-%H%M", time.gmtime()) + ".md"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    with open(path, "w") as f:
        f.write(f"# store-persist, {day}\n\n")
        f.write(f"- commit {commit}; {os.cpu_count()} CPUs ({cpu}); kernel {os.uname().release}\n")
        f.write(f"- command: `RUNS={RUNS} DEPTHS={','.join(map(str, DEPTHS))} bench/store-persist.py`\n")
        f.write("- client pinned to CPU 0, redis-server to CPU 1; the embedded store's process (runtime and "
                "storage thread) pinned to CPU 0\n")
        f.write(table)
    print(f"wrote {path}", file=sys.stderr)


def med(values):
    return statistics.median(values), min(values), max(values)


def per_cpu(rows, key):
    """Messages per CPU-second, over the rows whose window was long enough to measure."""
    usable = [r["messages"] / r[key] for r in rows if r[key] >= 2.0 / TICKS]
    return med(usable) if usable else None


def fmt(triple, digits=0):
    if triple is None:
        return "— (window under a clock tick)"
    m, lo, hi = triple
    f = f"{{:,.{digits}f}}"
    return f"{f.format(m)} ({f.format(lo)}–{f.format(hi)})"


def report(results, version):
    print(f"\nredis-server {version}, appendonly yes, appendfsync everysec; {CONTENT_BYTES}-byte contents; "
          f"{RUNS} run(s) per case, median (min–max)\n")
    print("| depth | client | msgs/s | msgs per redis CPU-s | msgs per client CPU-s | append p50 / p99 |")
    print("|---:|---|---:|---:|---:|---:|")
    for depth in DEPTHS:
        for side in ("ringchat-uring", "ringchat-epoll", "redis-benchmark"):
            rows = results[(side, depth)]
            rate = med([r["messages"] / r["wall"] for r in rows])
            per_server = per_cpu(rows, "server_cpu")
            per_client = per_cpu(rows, "client_cpu")
            lat = "—"
            if "p50_us" in rows[0]:
                lat = f"{statistics.median(r['p50_us'] for r in rows):.0f} / {statistics.median(r['p99_us'] for r in rows):.0f} µs"
            print(f"| {depth} | {side} | {fmt(rate)} | {fmt(per_server)} | {fmt(per_client)} | {lat} |")
    print("\nRatio of ringchat's msgs/s to redis-benchmark's at the same depth (median of per-round ratios):\n")
    print("| depth | uring / redis-benchmark | epoll / redis-benchmark |")
    print("|---:|---:|---:|")
    for depth in DEPTHS:
        rb = results[("redis-benchmark", depth)]
        ratios = []
        for side in ("ringchat-uring", "ringchat-epoll"):
            rows = results[(side, depth)]
            ratios.append(med([a["messages"] / a["wall"] / (b["messages"] / b["wall"]) for a, b in zip(rows, rb)]))
        print(f"| {depth} | {fmt(ratios[0], 2)} | {fmt(ratios[1], 2)} |")
    print("\nEmbedded store (SQLite, WAL, synchronous=FULL, group commit; acked after commit):\n")
    print("| appends in flight | msgs/s | msgs per process CPU-s | append p50 / p99 / max |")
    print("|---:|---:|---:|---:|")
    for depth in DEPTHS:
        rows = results[("embedded", depth)]
        rate = med([r["messages"] / r["wall"] for r in rows])
        process_cpu = per_cpu(rows, "client_cpu")
        lat = " / ".join(f"{statistics.median(r[k] for r in rows):.0f}" for k in ("p50_us", "p99_us", "max_us"))
        print(f"| {depth} | {fmt(rate)} | {fmt(process_cpu)} | {lat} µs |")


if __name__ == "__main__":
    main()
