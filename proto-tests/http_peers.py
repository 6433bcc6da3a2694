#!/usr/bin/env python3
"""HTTP/1.1 against real peers: curl, Python's http.client, and nginx as a reverse proxy.

Starts ringchat (RINGCHAT_BIN) on a private loopback port with 2 cores, for each I/O backend,
and checks that widely used clients and proxies interoperate with it: keep-alive reuse,
pipelining through a proxy's upstream keep-alive pool, chunked uploads, HEAD, conditional GET.
Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on failure.
Standard library only.
"""
import atexit
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import ctypes
import platform
import struct
import tempfile
import time

BIN = os.environ.get("RINGCHAT_BIN", "target/release/ringchat")
# Each server started here gets its own embedded-store directory under this one (the database
# is locked to one process); all removed at exit.
DATA_ROOT = tempfile.mkdtemp(prefix="ringchat-peers-data-")
atexit.register(shutil.rmtree, DATA_ROOT, True)


def data_dir():
    return tempfile.mkdtemp(dir=DATA_ROOT)
DEADLINE_S = 20
results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        results.append((name, e))
        print(f"FAIL {name}: {e!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path="/healthz"):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} not ready")
        time.sleep(0.02)


class Ringchat:
    def __init__(self, io, static_dir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [BIN, "--listen", f"127.0.0.1:{self.port}", "--threads", "2", "--io", io, "--static", static_dir,
             "--data-dir", data_dir()],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_http(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("ringchat did not exit within 10 s of SIGTERM")
        if code != 0:
            raise RuntimeError(f"ringchat exited {code}: {self.proc.stderr.read()[-2000:]}")


def curl(*args):
    out = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, timeout=20)
    if out.returncode != 0:
        raise RuntimeError(f"curl {args}: {out.stderr.decode()}")
    return out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")


def suite(io, tmp, static_dir):
    rc = Ringchat(io, static_dir)
    base = f"http://127.0.0.1:{rc.port}"
    try:
        def curl_reuses_one_connection():
            _, err = curl("-v", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                          f"{base}/", f"{base}/style.css", f"{base}/healthz")
            assert err.count("Connected to") == 1, err
            assert "Re-using existing connection" in err or "Reusing existing" in err, err

        def curl_chunked_upload():
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
                                  "--data-binary", "@-", f"{base}/api/upload"], input=b"x" * 70000, capture_output=True, timeout=20)
            assert out.stdout == b"404", out  # no upload endpoint yet: the body was read and routed

        def curl_head_and_http10():
            out, _ = curl("-I", f"{base}/index.html")
            assert re.search(r"(?i)^content-length: \d+", out, re.M), out
            out, _ = curl("--http1.0", "-i", f"{base}/healthz")
            assert "Connection: close" in out or "connection: close" in out.lower(), out

        def http_client_conditional_get():
            c = http.client.HTTPConnection("127.0.0.1", rc.port, timeout=5)
            c.request("GET", "/index.html")
            r = c.getresponse()
            r.read()
            etag = r.getheader("ETag")
            c.request("GET", "/index.html", headers={"If-None-Match": etag})
            r2 = c.getresponse()
            r2.read()
            assert r2.status == 304, r2.status
            c.request("HEAD", "/index.html")
            r3 = c.getresponse()
            assert r3.read() == b"" and r3.status == 200

        check(f"{io}: curl reuses one keep-alive connection for three URLs", curl_reuses_one_connection)
        check(f"{io}: curl chunked upload", curl_chunked_upload)
        check(f"{io}: curl HEAD and HTTP/1.0", curl_head_and_http10)
        check(f"{io}: http.client conditional GET and HEAD on one connection", http_client_conditional_get)

        if shutil.which("nginx"):
            def nginx_proxy():
                port = free_port()
                conf = os.path.join(tmp, f"nginx-{io}.conf")
                with open(conf, "w") as f:
                    f.write(f"""
daemon off; master_process off; worker_processes 1; pid {tmp}/nginx-{io}.pid;
error_log {tmp}/nginx-{io}.err warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream ringchat {{ server 127.0.0.1:{rc.port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://ringchat; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
                ng = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                try:
                    wait_http(port)
                    accepted_before = metric(rc.port, 'ringchat_accepted_connections_total{core="all"}')
                    for _ in range(200):
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                        c.request("GET", "/style.css")
                        r = c.getresponse()
                        assert r.status == 200 and r.read() == b"body{color:red}\n"
                        c.close()
                    accepted = metric(rc.port, 'ringchat_accepted_connections_total{core="all"}') - accepted_before
                    # nginx's upstream pool keeps connections to ringchat alive across requests.
                    assert accepted <= 8, f"{accepted} upstream connections for 200 requests"
                finally:
                    ng.terminate()
                    ng.wait(timeout=10)
            check(f"{io}: nginx reverse proxy with upstream keep-alive", nginx_proxy)
    finally:
        check(f"{io}: exits 0 on SIGTERM", rc.stop)


def metric(port, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    for line in body.splitlines():
        if line.startswith(key):
            return int(line.split()[-1])
    raise KeyError(key)


def block_io_uring():
    """preexec_fn: a seccomp filter that fails io_uring_setup with EPERM, as Docker's default
    profile does. Applies to the child only; nothing on the machine changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, EPERM = 0x7FFF0000, 0x00050000, 1
    BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
    NR_IO_URING_SETUP = 425  # the same on x86_64 and aarch64 (generic syscall table)
    prog = [
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def fallback_suite(static_dir):
    def auto_falls_back_to_epoll():
        port = free_port()
        proc = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}", "--threads", "2", "--static", static_dir,
                                 "--data-dir", data_dir()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=block_io_uring)
        try:
            wait_http(port)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/style.css")
            assert c.getresponse().read() == b"body{color:red}\n"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
        log = proc.stderr.read()
        warnings = [l for l in log.splitlines() if "io_uring is unavailable" in l]
        assert len(warnings) == 1, log
        assert "seccomp" in warnings[0] and "falling back to epoll" in warnings[0], warnings[0]
        assert 'io="epoll"' in log or "io=epoll" in log, log
        assert code == 0, code

    def uring_forced_exits_with_the_reason():
        start = time.monotonic()
        out = subprocess.run([BIN, "--listen", "127.0.0.1:0", "--io", "uring", "--static", static_dir,
                              "--data-dir", data_dir()],
                             capture_output=True, text=True, timeout=10, preexec_fn=block_io_uring)
        assert out.returncode != 0, out
        assert "io_uring is unavailable" in out.stderr and "seccomp" in out.stderr, out.stderr
        assert time.monotonic() - start < 5

    check("fallback: --io auto under a seccomp filter blocking io_uring serves on epoll, one log line", auto_falls_back_to_epoll)
    check("fallback: --io uring under the same filter exits non-zero and says why", uring_forced_exits_with_the_reason)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        static_dir = os.path.join(tmp, "static")
        os.makedirs(static_dir)
        with open(os.path.join(static_dir, "index.html"), "w") as f:
            f.write("<!doctype html><title>t</title>hello\n")
        with open(os.path.join(static_dir, "style.css"), "w") as f:
            f.write("body{color:red}\n")
        for io in ("uring", "epoll"):
            suite(io, tmp, static_dir)
        if platform.machine() in ("x86_64", "aarch64"):
            fallback_suite(static_dir)
        else:
            print(f"note: io_uring fallback checks need x86_64 or aarch64, not {platform.machine()}")
    failed = [n for n, e in results if e]
    print(f"proto-tests: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
