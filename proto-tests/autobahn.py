#!/usr/bin/env python3
"""WebSocket conformance: the Autobahn TestSuite cases, driven by kosoku, against ringchat's echo.

Starts ringchat (RINGCHAT_BIN) on a private loopback port with 2 cores and `--ws-echo`, once per
I/O backend (uring, epoll), and runs kosoku (PyPI; a native runner of the Autobahn TestSuite's
own case files, in fuzzingclient mode) against ws://127.0.0.1:PORT/api/ws-echo: every case but
12.* and 13.* (permessage-deflate, which ringchat does not negotiate). The server runs with
`--ws-max-message 16777216`, since the 9.* cases send messages of up to 16 MiB (the default
limit is 64 KiB).

Passes when every case's behavior is OK, NON-STRICT or INFORMATIONAL and its close behavior OK
or INFORMATIONAL, and every case of the selection reported exactly once. Prints one summary
line, writes proto-tests/autobahn/summary.md (committed: counts per behavior and per case group,
each case that is not OK with kosoku's reason, kosoku's version, the server's flags, the date)
and leaves kosoku's full report (Autobahn's JSON and HTML, one file per case) under
target/autobahn-report/BACKEND/. Exits non-zero on any failure.

kosoku is pinned (KOSOKU_VERSION) and installed when missing into a virtual environment cached
at target/autobahn-venv (git-ignored). Standard library only, besides kosoku in that venv.
"""
import atexit
import collections
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

KOSOKU_VERSION = "0.1.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RINGCHAT_BIN", os.path.join(ROOT, "target/release/ringchat"))
VENV = os.path.join(ROOT, "target", "autobahn-venv")
# Fallback when no venv can be made (a Debian python3 without python3-venv): pip --target.
PKGS = os.path.join(ROOT, "target", "autobahn-pkgs")
REPORT_ROOT = os.path.join(ROOT, "target", "autobahn-report")
SUMMARY = os.path.join(ROOT, "proto-tests", "autobahn", "summary.md")

BACKENDS = ("uring", "epoll")
EXCLUDED = ("12.*", "13.*")  # permessage-deflate: ringchat negotiates no extension
MAX_MESSAGE = 16 * 1024 * 1024  # 9.1.6 and 9.2.6 send 16 MiB messages
SERVER_FLAGS = ["--threads", "2", "--ws-echo", "--ws-max-message", str(MAX_MESSAGE)]
PARALLELISM = 1  # kosoku's default: one case at a time, as Autobahn runs them
DEADLINE_S = 20  # server start
RUN_TIMEOUT_S = 600  # one kosoku run (about 15 s here)

BEHAVIOR_OK = ("OK", "NON-STRICT", "INFORMATIONAL")
CLOSE_OK = ("OK", "INFORMATIONAL")
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
# Autobahn's case categories (its report's headings).
GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "WebSocket Compression (different payloads)",
    "13": "WebSocket Compression (different parameters)",
}

DATA_ROOT = tempfile.mkdtemp(prefix="ringchat-autobahn-")
atexit.register(shutil.rmtree, DATA_ROOT, True)


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# kosoku
# ---------------------------------------------------------------------------------------------

PROBE = "import importlib.metadata as m, kosoku; print(m.version('kosoku'))"


def kosoku_version(python, env=None):
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None


def pip_install(python, *args):
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args,
                    f"kosoku=={KOSOKU_VERSION}"], check=True, timeout=300)


def ensure_kosoku():
    """Returns (python, env) that import kosoku at KOSOKU_VERSION, installing it when missing:
    into the venv at target/autobahn-venv, or where no venv can be made, with pip --target into
    target/autobahn-pkgs (neither touches the system's Python; no --break-system-packages)."""
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.exists(venv_python) and kosoku_version(venv_python) == KOSOKU_VERSION:
        return venv_python, None
    pkgs_env = dict(os.environ, PYTHONPATH=PKGS)
    if os.path.isdir(PKGS) and kosoku_version(sys.executable, pkgs_env) == KOSOKU_VERSION:
        return sys.executable, pkgs_env
    log(f"== installing kosoku=={KOSOKU_VERSION} into {os.path.relpath(VENV, ROOT)}")
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], capture_output=True, text=True)
    if made.returncode == 0 and os.path.exists(venv_python):
        pip_install(venv_python)
        version = kosoku_version(venv_python)
        if version != KOSOKU_VERSION:
            raise RuntimeError(f"kosoku {version} in {VENV}, wanted {KOSOKU_VERSION}")
        return venv_python, None
    log(f"note: no venv ({made.stderr.strip().splitlines()[-1:] or made.returncode}); "
        f"pip --target {os.path.relpath(PKGS, ROOT)} instead")
    shutil.rmtree(VENV, True)
    shutil.rmtree(PKGS, True)
    pip_install(sys.executable, "--target", PKGS)
    version = kosoku_version(sys.executable, pkgs_env)
    if version != KOSOKU_VERSION:
        raise RuntimeError(f"kosoku {version} in {PKGS}, wanted {KOSOKU_VERSION}")
    return sys.executable, pkgs_env


def selected_cases(python, env):
    """The case ids kosoku knows (its index of the Autobahn case files), less 12.* and 13.*."""
    code = "import json; from kosoku.cases import CASES; print(json.dumps(list(CASES)))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    every = json.loads(out.stdout)
    return every, [c for c in every if c.split(".")[0] not in ("12", "13")]


def run_kosoku(python, env, url, outdir):
    """kosoku's own command line (its console script's entry point), writing Autobahn's report
    (index.json and one JSON and HTML file per case) into outdir. It exits 1 when a case fails;
    the verdict is read from the report, not from its exit code."""
    shutil.rmtree(outdir, True)
    cmd = [python, "-c", "import sys; from kosoku._cli import main; sys.argv[0] = 'kosoku'; main()",
           url, "--parallelism", str(PARALLELISM), "--outdir", outdir]
    for pattern in EXCLUDED:
        cmd += ["--exclude", pattern]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    index = os.path.join(outdir, "index.json")
    if not os.path.exists(index):
        raise RuntimeError(f"kosoku wrote no report (exit {out.returncode}): {(out.stdout + out.stderr)[-2000:]}")
    with open(index) as f:
        agents = json.load(f)
    results = {}
    for agent_cases in agents.values():
        for case_id, entry in agent_cases.items():
            if case_id in results:
                raise RuntimeError(f"case {case_id} reported twice")
            with open(os.path.join(outdir, entry["reportfile"])) as f:
                results[case_id] = json.load(f)
    return results


# ---------------------------------------------------------------------------------------------
# ringchat
# ---------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, proc):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ringchat exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} not ready")
        time.sleep(0.02)


class Ringchat:
    def __init__(self, io):
        self.port = free_port()
        static_dir = tempfile.mkdtemp(dir=DATA_ROOT)
        self.proc = subprocess.Popen(
            [BIN, "--listen", f"127.0.0.1:{self.port}", "--io", io, *SERVER_FLAGS,
             "--static", static_dir, "--data-dir", tempfile.mkdtemp(dir=DATA_ROOT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_http(self.port, self.proc)
        except Exception:
            self.proc.kill()
            self.proc.wait()
            raise

    def stop(self):
        """SIGTERM; returns None when it exited 0 within 10 s, else what went wrong."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "did not exit within 10 s of SIGTERM"
        if code != 0:
            return f"exited {code} on SIGTERM: {self.proc.stderr.read()[-2000:]}"
        return None


# ---------------------------------------------------------------------------------------------
# verdict and summary
# ---------------------------------------------------------------------------------------------

def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def passed(case):
    return case["behavior"] in BEHAVIOR_OK and case["behaviorClose"] in CLOSE_OK


def events(evs):
    """Autobahn's event list ([["message", payload, binary], ["pong", payload], ...]), short."""
    if not evs:
        return "nothing"
    shown = [f"{e[0]} {str(e[1])[:20]!r}" if len(e) > 1 else str(e[0]) for e in evs[:3]]
    return ", ".join(shown) + (f" and {len(evs) - 3} more" if len(evs) > 3 else "")


def md_cell(text, limit=240):
    text = " ".join(str(text).replace("|", "\\|").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_summary(runs, problems, selection, every, elapsed_s):
    """runs: {backend: {case_id: case report}}."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    total_failed = sum(1 for r in runs.values() for c in r.values() if not passed(c))
    verdict = "PASS" if not problems and total_failed == 0 else "FAIL"
    backends = list(runs)
    lines = [
        "# Autobahn conformance: ringchat's WebSocket server",
        "",
        "Written by `proto-tests/autobahn.py` (part of `proto-tests/run`); do not edit by hand.",
        "",
        f"- Verdict: **{verdict}**: every case must be OK, NON-STRICT or INFORMATIONAL, and close "
        "OK or INFORMATIONAL.",
        f"- Date: {today} (UTC); {elapsed_s:.0f} s for the whole run, install excluded.",
        f"- Runner: kosoku {KOSOKU_VERSION} (PyPI), fuzzingclient mode: the Autobahn TestSuite's case "
        f"files; parallelism {PARALLELISM}; report: `target/autobahn-report/BACKEND/`.",
        f"- Cases: {len(selection)} of its {len(every)}: every case but "
        f"{' and '.join(f'`{p}`' for p in EXCLUDED)} (permessage-deflate, not negotiated by "
        "ringchat). None skipped otherwise.",
        "- Server: `ringchat --listen 127.0.0.1:PORT --io BACKEND "
        f"{' '.join(SERVER_FLAGS)} --static TMP --data-dir TMP`, endpoint "
        "`ws://127.0.0.1:PORT/api/ws-echo`; `--ws-max-message` raised from its 64 KiB default "
        "because the 9.* cases send messages of up to 16 MiB. Backends: "
        + ", ".join(f"`{b}`" for b in backends) + ".",
        "",
    ]
    if problems:
        lines += ["## Run problems", ""] + [f"- {md_cell(p, 400)}" for p in problems] + [""]

    lines += ["## Behavior", "", "| behavior | close behavior | " + " | ".join(backends) + " |",
              "| --- | --- |" + " ---: |" * len(backends)]
    pairs = collections.Counter()
    per = {b: collections.Counter((c["behavior"], c["behaviorClose"]) for c in r.values()) for b, r in runs.items()}
    for counts in per.values():
        pairs.update(counts)
    order = {b: i for i, b in enumerate(BEHAVIORS)}
    for pair in sorted(pairs, key=lambda p: (order.get(p[0], 99), p[1] != "OK", p[1])):
        lines.append(f"| {pair[0]} | {pair[1]} | " + " | ".join(str(per[b][pair]) for b in backends) + " |")
    lines.append("")

    lines += ["## Per case group", "",
              "Counts over " + " and ".join(backends) + " together (cases × backends).", "",
              "| group | | cases | OK | NON-STRICT | INFORMATIONAL | not passed |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    groups = sorted({c.split(".")[0] for c in every}, key=int)
    for g in groups:
        ids = [c for c in selection if c.split(".")[0] == g]
        if not ids:
            lines.append(f"| {g} | {GROUPS.get(g, '')} | 0 | excluded | | | |")
            continue
        counts = collections.Counter()
        bad = 0
        for r in runs.values():
            for cid in ids:
                case = r.get(cid)
                if case is None:
                    bad += 1
                    continue
                counts[case["behavior"]] += 1
                bad += not passed(case)
        lines.append(f"| {g} | {GROUPS.get(g, '')} | {len(ids)} | {counts['OK']} | {counts['NON-STRICT']} | "
                     f"{counts['INFORMATIONAL']} | {bad} |")
    lines.append("")

    lines += ["## Cases not OK", "",
              "Every case whose behavior or close behavior is not OK, with kosoku's reason.", ""]
    rows = collections.OrderedDict()
    for b, r in runs.items():
        for cid in sorted(r, key=case_key):
            c = r[cid]
            if c["behavior"] == "OK" and c["behaviorClose"] == "OK":
                continue
            close = c["behaviorClose"]
            if c.get("remoteCloseCode") is not None:
                close += f" (server closed {c['remoteCloseCode']})"
            key = (cid, c["behavior"], close, c.get("result", ""), c.get("resultClose", ""))
            rows.setdefault(key, (c, []))[1].append(b)
    if rows:
        lines += ["| case | backends | behavior | close | reason | case description |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for (cid, behavior, close, result, result_close), (c, bs) in sorted(rows.items(), key=lambda kv: case_key(kv[0][0])):
            flag = "" if passed(c) else " **(fails)**"
            reason = result if close.startswith("OK") or close.startswith("INFORMATIONAL") else f"{result} {result_close}."
            wanted = (c.get("expected") or {}).get("OK")
            if behavior != "OK" and (wanted or c.get("received")):
                reason += f" Received {events(c.get('received'))}; OK needs {events(wanted)}."
            lines.append(f"| {cid} | {', '.join(bs)} | {behavior}{flag} | {close} | {md_cell(reason)} | "
                         f"{md_cell(c.get('description', '').replace('<b>', '').replace('</b>', ''))} |")
    else:
        lines.append("None.")
    lines.append("")
    os.makedirs(os.path.dirname(SUMMARY), exist_ok=True)
    with open(SUMMARY, "w") as f:
        f.write("\n".join(lines))


def main():
    started = time.monotonic()
    python, env = ensure_kosoku()
    every, selection = selected_cases(python, env)
    run_started = time.monotonic()
    runs, problems = {}, []
    for io in BACKENDS:
        try:
            server = Ringchat(io)
        except Exception as e:  # noqa: BLE001 - report and go on with the other backend
            problems.append(f"{io}: ringchat did not start: {e}")
            continue
        try:
            runs[io] = run_kosoku(python, env, f"ws://127.0.0.1:{server.port}/api/ws-echo",
                                  os.path.join(REPORT_ROOT, io))
        except Exception as e:  # noqa: BLE001
            problems.append(f"{io}: kosoku: {e!r}")
        finally:
            stopped = server.stop()
            if stopped:
                problems.append(f"{io}: ringchat {stopped}")
        if io in runs:
            got = set(runs[io])
            missing = [c for c in selection if c not in got]
            extra = sorted(got - set(selection), key=case_key)
            if missing:
                problems.append(f"{io}: {len(missing)} cases not reported: {', '.join(missing[:20])}")
            if extra:
                problems.append(f"{io}: cases outside the selection ran: {', '.join(extra[:20])}")
    elapsed = time.monotonic() - run_started
    write_summary(runs, problems, selection, every, elapsed)

    counts = collections.Counter(c["behavior"] for r in runs.values() for c in r.values())
    failures = [(io, cid, c) for io, r in runs.items() for cid, c in sorted(r.items(), key=lambda kv: case_key(kv[0]))
                if not passed(c)]
    for io, cid, c in failures:
        log(f"FAIL {io} {cid}: behavior {c['behavior']}, close {c['behaviorClose']}: {c.get('result')} "
            f"{c.get('resultClose')} (report: {os.path.relpath(os.path.join(REPORT_ROOT, io), ROOT)})")
    for p in problems:
        log(f"FAIL {p}")
    total = sum(len(r) for r in runs.values())
    detail = ", ".join(f"{b} {counts[b]}" for b in BEHAVIORS if counts[b])
    log(f"autobahn: {total - len(failures)} passed, {len(failures) + len(problems)} failed "
        f"({len(selection)} cases x {len(runs)}/{len(BACKENDS)} backends, all but {' '.join(EXCLUDED)}: {detail}; "
        f"kosoku {KOSOKU_VERSION}; {elapsed:.0f} s, {time.monotonic() - started:.0f} s in all; "
        f"{os.path.relpath(SUMMARY, ROOT)})")
    sys.exit(1 if failures or problems else 0)


if __name__ == "__main__":
    main()
