"""What bench/soak, bench/cycles and bench/overload share (not run on its own).

Each of those scripts measures one row of RELIABILITY.md's "Load and soak" with `chat-load`
(bench/src/bin/chat_load.rs: `--scenario churn`, `cycles`, `overload`) against a fresh release
ringchat, and judges the row's pass criteria. This module holds the common parts:

- settings from the environment (SMOKE, SERVER_CPU, CLIENT_CPU, BUILD, RESULTS_DIR, KEEP_TMP);
- `build()`: the release ringchat and chat-load;
- `Server`: ringchat `--threads 1` pinned to SERVER_CPU (taskset), embedded store in a new temp
  data dir, rooms r0..r9, sign-ups unthrottled, `MIMALLOC_PURGE_DELAY=0` (freed pages go back to
  the system at once, so resident memory follows what is really in use); stopped on exit, on an
  error and on Ctrl-C;
- `chat_load(...)`: runs chat-load pinned to CLIENT_CPU, keeps its output (with the command
  line) under raw/, and parses its `key=value` lines;
- `Report`: the verdicts (PASS / FAIL / INFO per criterion, printed as they are judged) and
  summary.md, whose header records the commit, the machine, the load average before and after,
  and that these 2-core machines are shared, so timing figures are noisy.

A bench script is not a test, but it says honestly when a criterion fails: exit status 1 then.
With SMOKE=1 (a few seconds, for proto-tests/run) the timing criteria are printed as INFO and only
the integrity ones (no errors, nothing lost, descriptors and connections back to baseline) can
fail the run; smoke results go to a temp dir unless RESULTS_DIR is set.
"""

import datetime
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
env = os.environ.get
SMOKE = env("SMOKE") == "1" or "--smoke" in sys.argv[1:]
SERVER_CPU = env("SERVER_CPU", "0")
CLIENT_CPU = env("CLIENT_CPU", "1")
BUILD = env("BUILD", "1") != "0"
KEEP_TMP = env("KEEP_TMP", "0") == "1"
RINGCHAT_BIN = env("RINGCHAT_BIN", os.path.join(ROOT, "target", "release", "ringchat"))
CHAT_LOAD_BIN = env("CHAT_LOAD_BIN", os.path.join(ROOT, "target", "release", "chat-load"))
ROOMS = 10
ROOM_FLAG = ",".join(f"r{i}:Room {i}" for i in range(ROOMS))
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
# The day these rows were first measured names the results directory (BENCH.md: results are
# committed, dated); RESULTS_DATE overrides it.
RESULTS_DATE = env("RESULTS_DATE", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))

STARTED = []


def log(name, msg):
    print(f"bench/{name}: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    """2,000 connections need 4,000+ descriptors in chat-load (a dup per socket for writes)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def build():
    if BUILD:
        subprocess.run(["cargo", "build", "--release", "-p", "ringchat", "-p", "ringchat-bench", "--bin", "ringchat",
                        "--bin", "chat-load"], cwd=ROOT, check=True)


def cleanup():
    for proc in reversed(STARTED):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def install_signal_handlers():
    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def healthz(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Server:
    """A release ringchat on SERVER_CPU, `--threads 1`, in its own temp data dir."""

    def __init__(self, name, tmp, extra=()):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix=f"{name}-data-", dir=tmp)
        self.log_path = os.path.join(tmp, f"ringchat-{self.port}.log")
        self.cmd = ["taskset", "-c", SERVER_CPU, RINGCHAT_BIN, "--listen", self.addr, "--threads", "1",
                    "--data-dir", self.data, "--rooms", ROOM_FLAG, "--signups-per-hour", "1000000",
                    "--static", os.path.join(ROOT, "static"), "--log-level", "warn", *extra]
        env_vars = dict(os.environ, MIMALLOC_PURGE_DELAY="0")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=env_vars)
        STARTED.append(self.proc)
        deadline = time.time() + START_TIMEOUT_S
        while not healthz(self.port):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ringchat did not start: {self.cmd}; see {self.log_path}")
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """Stops the server; returns its exit status (a crash is reported, not hidden)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def chat_load(server, args, raw_path, timeout_s):
    """Runs chat-load on CLIENT_CPU against `server`; returns its key=value lines as a dict
    (values as strings) and the command line. The whole output goes to raw_path."""
    cmd = ["taskset", "-c", CLIENT_CPU, CHAT_LOAD_BIN, "--addr", server.addr, "--server-pid",
           str(server.pid), "--server-cpu", SERVER_CPU, *[str(a) for a in args]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    with open(raw_path, "w") as f:
        f.write("# " + shlex.join(cmd) + "\n" + out.stdout + "\n# stderr\n" + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"chat-load failed ({out.returncode}): {out.stderr[-2000:]}")
    kv = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            kv[key] = value
    return kv, cmd


def windows(kv):
    """The `window_<k>=` rows of a churn or overload run, as dicts keyed by window_columns."""
    cols = kv["window_columns"].split(",")
    rows = []
    k = 0
    while f"window_{k}" in kv:
        values = kv[f"window_{k}"].split(",")
        row = dict(zip(cols, values))
        for c in cols:
            if c != "refused":
                row[c] = float(row[c])
        rows.append(row)
        k += 1
    return rows


def kinds(kv, prefix):
    """chat-load's `<prefix>_<kind>=N` counts (not `_total` or `_example<i>`), as kind: N."""
    out = {}
    for key, value in kv.items():
        kind = key[len(prefix) + 1:]
        if key.startswith(prefix + "_") and kind != "total" and not kind.startswith("example"):
            out[kind] = int(value)
    return out


def read_samples(path):
    """The --samples CSV as a list of dicts of numbers."""
    with open(path) as f:
        lines = f.read().split("\n")
    cols = lines[0].split(",")
    return [dict(zip(cols, map(float, line.split(",")))) for line in lines[1:] if line.strip()]


def fit_line(xs, ys):
    """Least-squares slope and intercept."""
    n = len(xs)
    if n < 2:
        return 0.0, (ys[0] if ys else 0.0)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def load_average():
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine():
    return f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()})"


def commit():
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


class Report:
    """Verdicts and summary.md for one script run."""

    def __init__(self, name, title):
        self.name = name
        self.title = title
        self.tmp = tempfile.mkdtemp(prefix=f"ringchat-{name}-")
        default_dir = (os.path.join(self.tmp, "results") if SMOKE
                       else os.path.join(ROOT, "bench", "results", f"{RESULTS_DATE}-{name}"))
        self.dir = env("RESULTS_DIR", default_dir)
        self.raw = os.path.join(self.dir, "raw")
        os.makedirs(self.raw, exist_ok=True)
        self.verdicts = []
        self.sections = []
        self.commands = []
        self.load_before = load_average()
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def judge(self, criterion, ok, detail, timing=False):
        """Records one criterion. A timing criterion is INFO in a smoke run (seconds prove
        nothing about drift or recovery); ok=None is INFO always."""
        if ok is None or (timing and SMOKE):
            verdict = "INFO"
        else:
            verdict = "PASS" if ok else "FAIL"
        self.verdicts.append((verdict, criterion, detail))
        print(f"{verdict}: {criterion}: {detail}", flush=True)

    def section(self, heading, lines):
        self.sections.append((heading, lines))

    def failed(self):
        return any(v == "FAIL" for v, _, _ in self.verdicts)

    def write(self, settings):
        load_after = load_average()
        lines = [
            f"# {self.title} ({RESULTS_DATE})", "",
            f"Measured at commit {commit()} on {machine()}, "
            f"{self.started.strftime('%Y-%m-%d %H:%M')} UTC{' (SMOKE run: seconds only)' if SMOKE else ''}.",
            "",
            f"**A shared machine.** Other agents were compiling and testing on these 2 cores during "
            f"the run: load average (1/5/15 min) {self.load_before} before, {load_after} after. The "
            f"server ran `--threads 1` pinned to CPU {SERVER_CPU}, the generator (chat-load) to CPU "
            f"{CLIENT_CPU}; `other %` below is the time CPU {SERVER_CPU} spent on anything but the "
            f"server. Timing figures are noisy; counts (errors, losses, descriptors) are not.", "",
            "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), "",
            "## Verdicts", "", "| verdict | criterion | measured |", "|---|---|---|",
        ]
        lines += [f"| {v} | {c} | {d} |" for v, c, d in self.verdicts]
        for heading, body in self.sections:
            lines += ["", f"## {heading}", "", *body]
        lines += ["", "## Commands", "", *[f"    {shlex.join(c)}" for c in self.commands], "",
                  "Raw chat-load output (with its command line) and the server samples: `raw/`.", ""]
        with open(os.path.join(self.dir, "summary.md"), "w") as f:
            f.write("\n".join(lines))
        log(self.name, f"wrote {os.path.join(self.dir, 'summary.md')}")

    def finish(self):
        """Removes the temp dir (data dirs, server logs; a smoke run's results too, unless
        RESULTS_DIR or KEEP_TMP) and exits 1 if a criterion failed."""
        inside = os.path.abspath(self.dir).startswith(self.tmp)
        if not KEEP_TMP and not inside:
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif not KEEP_TMP and SMOKE and env("RESULTS_DIR") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            log(self.name, "smoke run: its summary is discarded (KEEP_TMP=1 or RESULTS_DIR keeps it)")
        sys.exit(1 if self.failed() else 0)


def median(values):
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def ms(us):
    return f"{float(us) / 1000:.1f} ms"
