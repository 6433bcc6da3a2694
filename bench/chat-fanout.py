#!/usr/bin/env python3
"""Chat fan-out: 1,000 WebSocket connections, 10 rooms, messages at a fixed rate, open loop.

    bench/chat-fanout.py            # RUNS=5 per rate, RATES=200,1000, 10 s windows
    bench/chat-fanout.py --smoke    # one tiny run (50 connections, 1 s), for CI; also SMOKE=1

For each run and rate, starts a fresh release ringchat (embedded store in a new data dir,
`--threads 1`) pinned to CPU 0 and runs `chat-load` pinned to CPU 1: CONNS connections over
USERS accounts, SENDERS of them posting round-robin at RATE messages/s in total, sender s into
room r<s % 10>. Every connection is a member of every room, so each message is delivered to
every connection: deliveries/s = RATE x CONNS. Each message carries its intended send time
(CLOCK_MONOTONIC ns); each recipient records receive - intended in an HdrHistogram, and checks
loss, duplicates and order (per sender and per room, plus one order per room across all
connections). The server's utime+stime (all threads) is read at the edges of the measured
window. Rates are interleaved round by round. Prints a Markdown table of medians (min-max) and,
for full runs, writes it to bench/results/chat-fanout-<UTC date>.md.

Settings (environment): RUNS, RATES (comma-separated messages/s), DURATION, WARMUP, DRAIN,
CONNS, USERS, SENDERS, SIZE (content bytes), SERVER_CPU, CLIENT_CPU, BUILD=0 (use existing
binaries), RINGCHAT_BIN, CHAT_LOAD_BIN, RESULTS_FILE, EXTRA_SERVER_ARGS (e.g.
"--redis redis://127.0.0.1:6379").
"""

import datetime
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--smoke" in sys.argv[1:] or os.environ.get("SMOKE") == "1"
if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
    print(__doc__)
    sys.exit(0)

env = os.environ.get
RUNS = 1 if SMOKE else int(env("RUNS", "5"))
RATES = [float(r) for r in env("RATES", "50" if SMOKE else "200,1000").split(",")]
DURATION = float(env("DURATION", "1" if SMOKE else "10"))
WARMUP = float(env("WARMUP", "0.5" if SMOKE else "2"))
DRAIN = float(env("DRAIN", "1" if SMOKE else "2"))
CONNS = int(env("CONNS", "50" if SMOKE else "1000"))
USERS = int(env("USERS", "3" if SMOKE else "10"))
SENDERS = int(env("SENDERS", "10"))
SIZE = int(env("SIZE", "64"))
SERVER_CPU = env("SERVER_CPU", "0")
CLIENT_CPU = env("CLIENT_CPU", "1")
BUILD = env("BUILD", "1") != "0"
RINGCHAT_BIN = env("RINGCHAT_BIN", os.path.join(ROOT, "target", "release", "ringchat"))
CHAT_LOAD_BIN = env("CHAT_LOAD_BIN", os.path.join(ROOT, "target", "release", "chat-load"))
EXTRA_SERVER_ARGS = shlex.split(env("EXTRA_SERVER_ARGS", ""))
ROOMS = ",".join(f"r{i}:R{i}" for i in range(10))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ringchat exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("ringchat did not start listening")


def one_run(rate):
    tmp = tempfile.mkdtemp(prefix="chat-fanout-")
    os.makedirs(os.path.join(tmp, "data"))
    os.makedirs(os.path.join(tmp, "static"))
    port = free_port()
    server_cmd = ["taskset", "-c", SERVER_CPU, RINGCHAT_BIN, "--listen", f"127.0.0.1:{port}",
                  "--threads", "1", "--data-dir", os.path.join(tmp, "data"),
                  "--static", os.path.join(tmp, "static"), "--rooms", ROOMS,
                  "--log-level", "warn", "--signups-per-hour", "100000"] + EXTRA_SERVER_ARGS
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen(server_cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, server)
        load_cmd = ["taskset", "-c", CLIENT_CPU, CHAT_LOAD_BIN, "--addr", f"127.0.0.1:{port}",
                    "--conns", str(CONNS), "--users", str(USERS), "--senders", str(SENDERS),
                    "--rate", str(rate), "--warmup", str(WARMUP), "--duration", str(DURATION),
                    "--drain", str(DRAIN), "--size", str(SIZE), "--server-pid", str(server.pid),
                    "--server-cpu", SERVER_CPU]
        out = subprocess.run(load_cmd, capture_output=True, text=True, timeout=DURATION + WARMUP + DRAIN + 120)
        if out.returncode != 0:
            raise RuntimeError(f"chat-load failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        r = {}
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                try:
                    r[k] = float(v)
                except ValueError:
                    r[k] = v
        if server.poll() is not None:
            raise RuntimeError(f"ringchat exited during the run ({server.returncode})")
        return r, server_cmd, load_cmd
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def main():
    if BUILD:
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "ringchat"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringchat-bench", "--bin", "chat-load"],
                       cwd=ROOT, check=True)
    results = {rate: [] for rate in RATES}
    cmds = {}
    for run in range(RUNS):
        for rate in RATES:
            r, server_cmd, load_cmd = one_run(rate)
            results[rate].append(r)
            cmds[rate] = (server_cmd, load_cmd)
            print(f"run {run + 1}/{RUNS} rate {rate:g}: {r.get('deliveries_per_s', 0):.0f} deliveries/s, "
                  f"server busy {r.get('server_busy_pct', 0):.0f}%, p50 {r.get('p50_us', 0) / 1000:.2f} ms, "
                  f"p99 {r.get('p99_us', 0) / 1000:.2f} ms, lost {r.get('lost', 0):.0f}, "
                  f"dup {r.get('duplicated', 0):.0f}, reordered {r.get('out_of_order', 0):.0f}", file=sys.stderr)

    def cell(rows, key, scale=1.0, fmt="{:.0f}"):
        vals = [row.get(key, float("nan")) * scale for row in rows]
        med = statistics.median(vals)
        return f"{fmt.format(med)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"

    lines = []
    lines.append(f"Chat fan-out: {CONNS} WebSocket connections ({USERS} accounts), 10 rooms, {SENDERS} senders, "
                 f"{SIZE}-byte contents, every connection receives every message; server `--threads 1` on "
                 f"CPU {SERVER_CPU}, embedded store{' + ' + ' '.join(EXTRA_SERVER_ARGS) if EXTRA_SERVER_ARGS else ''}; "
                 f"generator on CPU {CLIENT_CPU}; {DURATION:g} s measured after {WARMUP:g} s warm-up; "
                 f"{RUNS} run(s) per rate, median (min–max). Latency is open-loop, from the intended send time.")
    lines.append("")
    lines.append("| msgs/s | deliveries/s | deliveries per server CPU-s | server busy % | other % | generator busy % "
                 "| p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | send lag mean ms | lost / dup / reordered / room-order mismatch |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ms = 1 / 1000
    for rate in RATES:
        rows = results[rate]
        bad = [sum(row.get(k, 0) for row in rows) for k in ("lost", "duplicated", "out_of_order", "room_order_mismatch")]
        lines.append(
            f"| {rate:g} | {cell(rows, 'deliveries_per_s')} | {cell(rows, 'deliveries_per_server_cpu_s')} | "
            f"{cell(rows, 'server_busy_pct')} | {cell(rows, 'other_pct')} | {cell(rows, 'generator_busy_pct')} | "
            f"{cell(rows, 'p50_us', ms, '{:.2f}')} | {cell(rows, 'p90_us', ms, '{:.2f}')} | "
            f"{cell(rows, 'p99_us', ms, '{:.2f}')} | {cell(rows, 'p999_us', ms, '{:.2f}')} | "
            f"{cell(rows, 'max_us', ms, '{:.2f}')} | {cell(rows, 'send_lag_mean_us', ms, '{:.2f}')} | "
            f"{' / '.join(f'{b:.0f}' for b in bad)} (sum over runs) |")
    table = "\n".join(lines)
    print("\n" + table)
    failures = sum(sum(row.get(k, 0) for k in ("lost", "duplicated", "out_of_order", "room_order_mismatch",
                                                "closed_early")) for rows in results.values() for row in rows)
    if not SMOKE:
        date = datetime.datetime.now(datetime.timezone.utc)
        path = env("RESULTS_FILE") or os.path.join(ROOT, "bench", "results", f"chat-fanout-{date:%Y-%m-%d}.md")
        if os.path.exists(path) and not env("RESULTS_FILE"):
            path = os.path.join(ROOT, "bench", "results", f"chat-fanout-{date:%Y-%m-%d-%H%M}.md")
        dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
        header = [f"# chat-fanout, {date:%Y-%m-%d %H:%M} UTC", "",
                  f"- commit: {git('rev-parse', '--short', 'HEAD')}{dirty}",
                  f"- machine: {machine()}",
                  f"- {rustc}",
                  f"- command: `{' '.join(sys.argv)}` with RUNS={RUNS} RATES={','.join(f'{r:g}' for r in RATES)} "
                  f"DURATION={DURATION:g} CONNS={CONNS} USERS={USERS} SENDERS={SENDERS} SIZE={SIZE}"]
        for rate, (server_cmd, load_cmd) in cmds.items():
            header.append(f"- rate {rate:g}: server `{' '.join(server_cmd)}`; load `{' '.join(load_cmd)}` "
                          "(port and paths differ per run)")
        with open(path, "w") as f:
            f.write("\n".join(header) + "\n\n" + table + "\n")
        print(f"\nwritten to {os.path.relpath(path, ROOT)}", file=sys.stderr)
    if failures:
        print(f"FAILED: {failures:.0f} lost/duplicated/reordered deliveries or closed connections", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
