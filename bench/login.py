#!/usr/bin/env python3
"""Logins per second, what the password-hashing pool costs, and whether the event loop stays
responsive during a login storm.

    bench/login.py            # RUNS=5, 5 s windows
    bench/login.py --smoke    # one 1 s window per case, for CI; also SMOKE=1

For each case, starts a release ringchat (embedded store, `--threads 1`, so one core serves
HTTP) pinned to CPU 0 with `--hash-threads H`, creates one user, then for DURATION seconds
drives CLIENTS concurrent keep-alive connections from this process (pinned to CPU 1), each
sending `POST /api/login` with the right password back to back, while one more connection
sends `GET /healthz` every 2 ms (open loop: latency counted from the intended send time).
Reported per case: logins/s, server CPU-seconds per login (all threads: the core and the
hashing pool, from /proc/<pid>/stat), the login latency p50/p99, and /healthz p50/p99/max
during the storm next to an idle baseline. Every login must answer 204.

Cases: H = 1 and H = 2 hashing threads (on 2 CPUs, H = 2 shares CPU 0 and the client's CPU 1:
it shows what more hashing threads buy and cost on a small machine).
"""

import http.client
import multiprocessing
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--smoke" in sys.argv[1:] or os.environ.get("SMOKE") == "1"
RUNS = 1 if SMOKE else int(os.environ.get("RUNS", "5"))
DURATION = 1.0 if SMOKE else float(os.environ.get("DURATION", "5"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
HASH_THREADS = [1, 2]
TICKS = os.sysconf("SC_CLK_TCK")
PASSWORD = "correct horse battery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_by_thread(pid):
    """CPU-seconds per thread group: 'hash' (the hashing pool), 'store' (the embedded store's
    thread), 'core' (everything else: the core's event loop and the main thread)."""
    out = {"hash": 0.0, "store": 0.0, "core": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "hash" if name.startswith("ringchat-hash") else "store" if name.startswith("ringchat-store") else "core"
        out[kind] += (int(fields[11]) + int(fields[12])) / TICKS
    return out


def probe_process(port, seconds, pipe, interval=0.002):
    """GET /healthz every `interval` seconds on one keep-alive connection, open loop: each
    latency is counted from the intended send time."""
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out, start = [], time.monotonic()
    next_at = start
    while next_at - start < seconds:
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        h.request("GET", "/healthz")
        h.getresponse().read()
        out.append(time.monotonic() - next_at)
        next_at += interval
    pipe.send(out)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))] if values else float("nan")


def post(conn, path, body):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status


def run_case(binary, hash_threads):
    port = free_port()
    data = tempfile.mkdtemp(prefix="login-bench-")
    server = subprocess.Popen(
        ["taskset", "-c", "0", binary, "--listen", f"127.0.0.1:{port}", "--threads", "1",
         "--hash-threads", str(hash_threads), "--hash-queue", "1024", "--data-dir", data,
         "--login-failures-per-minute", "1000000", "--signups-per-hour", "1000000", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert post(c, "/api/create-account", {"username": "bencher", "email": "bench@example.com", "password": PASSWORD}) == 204

        def healthz_probe(seconds):
            """Runs the /healthz probe in its own process (pinned to the client's CPU, apart from
            the login threads' interpreter lock) for `seconds`; returns its latencies."""
            parent, child = multiprocessing.Pipe()
            p = multiprocessing.Process(target=probe_process, args=(port, seconds, child))
            p.start()
            return p, parent

        b_core0, b_t0 = cpu_by_thread(server.pid)["core"], time.monotonic()
        p, pipe = healthz_probe(min(2.0, DURATION))
        baseline = pipe.recv()
        p.join()
        # The core's CPU per second spent on the /healthz probe alone, subtracted below.
        probe_core_per_s = (cpu_by_thread(server.pid)["core"] - b_core0) / (time.monotonic() - b_t0)

        lat, statuses, lock = [], [], threading.Lock()
        stop = threading.Event()

        def login_loop():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine, codes = [], []
            while not stop.is_set():
                t0 = time.monotonic()
                codes.append(post(conn, "/api/login", {"email": "bench@example.com", "password": PASSWORD}))
                mine.append(time.monotonic() - t0)
            with lock:
                lat.extend(mine)
                statuses.extend(codes)

        threads = [threading.Thread(target=login_loop) for _ in range(CLIENTS)]
        cpu0, t0, split0 = cpu_seconds(server.pid), time.monotonic(), cpu_by_thread(server.pid)
        for th in threads:
            th.start()
        p, pipe = healthz_probe(DURATION)
        during = pipe.recv()
        p.join()
        stop.set()
        for th in threads:
            th.join()
        wall, cpu = time.monotonic() - t0, cpu_seconds(server.pid) - cpu0
        split1 = cpu_by_thread(server.pid)
        split = {k: split1[k] - split0[k] for k in split1}
        split["core"] = max(0.0, split["core"] - probe_core_per_s * wall)
        bad = [s for s in statuses if s != 204]
        if bad:
            raise SystemExit(f"{len(bad)} logins did not answer 204: {sorted(set(bad))}")
        return {
            "logins": len(statuses), "wall": wall, "cpu": cpu, "split": split,
            "login_p50": pct(lat, 0.5), "login_p99": pct(lat, 0.99),
            "hz_base_p99": pct(baseline, 0.99),
            "hz_p50": pct(during, 0.5), "hz_p99": pct(during, 0.99), "hz_max": max(during),
        }
    finally:
        server.terminate()
        server.wait(timeout=15)
        shutil.rmtree(data, ignore_errors=True)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "--bin", "ringchat"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "ringchat")
    os.sched_setaffinity(0, {1})
    results = {h: [] for h in HASH_THREADS}
    for run in range(RUNS):
        for h in HASH_THREADS:
            results[h].append(run_case(binary, h))
        print(f"round {run + 1}/{RUNS} done", file=sys.stderr)
    med = lambda rows, f: statistics.median(f(r) for r in rows)
    lo_hi = lambda rows, f: (min(f(r) for r in rows), max(f(r) for r in rows))
    print(f"\nLogin storm: {CLIENTS} keep-alive clients logging in back to back for {DURATION:.0f} s, "
          f"server on 1 core (CPU 0), embedded store; {RUNS} run(s), median (min–max)\n")
    print("| hashing threads | logins/s | server CPU-ms per login (core + hashing + store; probe excluded) | login p50 / p99 | /healthz p50 / p99 / max during | /healthz p99 idle |")
    print("|---:|---:|---:|---:|---:|---:|")
    ms = lambda s: f"{s * 1000:.1f}"
    for h in HASH_THREADS:
        rows = results[h]
        rate = lambda r: r["logins"] / r["wall"]
        cost = lambda r: sum(r["split"].values()) / max(r["logins"], 1) * 1000
        lo, hi = lo_hi(rows, rate)
        clo, chi = lo_hi(rows, cost)
        part = lambda k: med(rows, lambda r: r["split"][k] / max(r["logins"], 1) * 1000)
        print(f"| {h} | {med(rows, rate):.0f} ({lo:.0f}–{hi:.0f}) | {med(rows, cost):.1f} ({clo:.1f}–{chi:.1f}): "
              f"{part('core'):.2f} + {part('hash'):.1f} + {part('store'):.2f} | "
              f"{ms(med(rows, lambda r: r['login_p50']))} / {ms(med(rows, lambda r: r['login_p99']))} ms | "
              f"{ms(med(rows, lambda r: r['hz_p50']))} / {ms(med(rows, lambda r: r['hz_p99']))} / {ms(med(rows, lambda r: r['hz_max']))} ms | "
              f"{ms(med(rows, lambda r: r['hz_base_p99']))} ms |")


if __name__ == "__main__":
    main()
