#!/usr/bin/env python3
"""Checks that each benchmark peer speaks the room protocol of bench/peers/README.md.

For each peer: start it on a free loopback port, wait for GET /healthz, check that bad targets
and room lists get a 404 without an upgrade, then connect clients to room a (three of them, one
listing a three times, one in 64 rooms), to room b, and to both a and b; send 100 messages from
each of four senders interleaved, and check that every member of a room receives all of that
room's messages exactly once and in the same order (each sender's own order kept), and nothing
else. Then messages that name no room the sender is in are dropped without closing it, a 64 KiB
message passes, a larger one and a binary frame do not, a late joiner is served, and SIGTERM
stops the peer. Prints PASS or FAIL per peer; exits 1 if any failed.

    bench/peers/check.py [bun] [node-ws] [tokio-tungstenite]

Python 3 standard library only: the WebSocket client below is the few lines RFC 6455 needs
(handshake, masked frames out, unmasked frames in, pong and close). Run bench/peers/install.sh
first.
"""

import base64
import glob
import hashlib
import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WS_MESSAGE_BYTES_MAX = 64 * 1024
ROOMS_PER_CONNECTION_MAX = 64
ROOM_NAME_BYTES_MAX = 64
MESSAGES_PER_SENDER = 100
READY_TIMEOUT_S = 20.0
IO_TIMEOUT_S = 5.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class CheckFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


class Closed(Exception):
    """The server closed the WebSocket (close frame, with its code) or the TCP connection."""

    def __init__(self, code):
        super().__init__(f"closed ({code})")
        self.code = code


class Client:
    """A blocking WebSocket client: enough of RFC 6455 to join a room, send and receive text."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.fragments = None
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = self._read_head()
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        if self.status != 101:
            return
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        expect(headers.get("sec-websocket-accept") == accept, f"bad Sec-WebSocket-Accept: {headers}")

    def _read_head(self):
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CheckFailed("connection closed during the handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        mask = os.urandom(4)
        # Masking byte by byte is slow in Python; XOR as one big integer instead.
        n = len(payload)
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.sock.sendall(header + mask + masked)

    def send_text(self, text):
        self._send_frame(OP_TEXT, text.encode())

    def send_binary(self, data):
        self._send_frame(OP_BINARY, data)

    def close(self):
        try:
            self._send_frame(OP_CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()

    def _take(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed("EOF")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_text(self):
        """The next text message; answers pings, raises Closed at a close frame or EOF."""
        while True:
            b0, b1 = self._take(2)
            fin, opcode, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            expect(not b1 & 0x80, "the server masked a frame")
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            payload = self._take(length)
            if opcode == OP_PING:
                self._send_frame(OP_PONG, payload)
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code)
            elif opcode == OP_BINARY or (opcode == OP_CONT and self.fragments is None):
                raise CheckFailed(f"unexpected frame with opcode {opcode}")
            else:
                self.fragments = (self.fragments or b"") + payload
                if fin:
                    text, self.fragments = self.fragments.decode(), None
                    return text


def http_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bun_binary():
    """node_modules/.bin/bun, or the platform package's binary if Bun's postinstall never ran."""
    candidates = [os.path.join(HERE, "bun/node_modules/.bin/bun")]
    candidates += sorted(glob.glob(os.path.join(HERE, "bun/node_modules/@oven/bun-linux-*/bin/bun")))
    for path in candidates:
        try:
            subprocess.run([path, "--version"], check=True, capture_output=True, timeout=10)
            return path
        except (OSError, subprocess.SubprocessError):
            continue
    raise CheckFailed("no working bun binary; run bench/peers/install.sh")


PEERS = {
    "bun": lambda port: [bun_binary(), os.path.join(HERE, "bun/server.js"), str(port)],
    "node-ws": lambda port: ["node", os.path.join(HERE, "node-ws/server.js"), str(port)],
    "tokio-tungstenite": lambda port: [
        os.path.join(HERE, "tokio-tungstenite/target/release/peer-tokio-tungstenite"), str(port)
    ],
}


def wait_ready(process, port):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        expect(process.poll() is None, f"exited early with status {process.returncode}")
        try:
            status, body = http_get(port, "/healthz")
            expect(status == 200 and body == b"ok", f"/healthz answered {status} {body!r}")
            return
        except OSError:
            time.sleep(0.05)
    raise CheckFailed("/healthz not ready in time")


def rooms_target(*rooms):
    return "/ws?rooms=" + ",".join(rooms)


def check_bad_targets(port):
    status, _ = http_get(port, "/nope")
    expect(status == 404, f"GET /nope answered {status}")
    too_many = [f"r{i}" for i in range(ROOMS_PER_CONNECTION_MAX + 1)]
    for target in [
        "/ws", "/ws?", "/ws?rooms", "/ws?rooms=", "/ws?rooms=,", "/ws?rooms=a,", "/ws?rooms=,a",
        "/ws?rooms=a,,b", rooms_target(*too_many), "/ws?rooms=bad!room", "/ws?rooms=a,b/c",
        "/ws?rooms=" + "x" * (ROOM_NAME_BYTES_MAX + 1), "/ws?rooms=.", "/ws?rooms=..",
        "/ws?rooms=a,..", "/ws?rooms=a%2Cb", "/ws?rooms=a&x=1", "/ws?x=1&rooms=a", "/ws?room=a",
        "/ws/a", "/ws/", "/ws/?rooms=a", "/ws/a?rooms=a", "/wss?rooms=a", "/other?rooms=a",
    ]:
        client = Client(port, target)
        expect(client.status == 404, f"upgrade at {target[:80]} answered {client.status}, not 404")
        client.sock.close()


def receive(client, name, count):
    """The next `count` text messages of `client`."""
    got = []
    try:
        while len(got) < count:
            got.append(client.recv_text())
    except TimeoutError:
        raise CheckFailed(f"{name} received {len(got)} of {count} messages, "
                          f"then nothing for {IO_TIMEOUT_S:.0f} s") from None
    return got


def check_received(name, got, sent):
    """`got` is exactly the messages `sent`, each once, and each sender's to each room in the
    order sent (the order of one sender's messages to different rooms is not specified)."""
    expect(len(set(got)) == len(got), f"{name} received duplicates")
    expect(set(got) == set(sent), f"{name} received {sorted(set(got) - set(sent))[:3]} "
                                  f"and missed {sorted(set(sent) - set(got))[:3]}")
    streams = {}
    for message in got:  # "<room>\n<sender> <number> ..."
        room, text = message.split("\n", 1)
        sender, number = text.split()[:2]
        streams.setdefault((room, sender), []).append(int(number))
    for (room, sender), numbers in streams.items():
        expect(numbers == sorted(numbers),
               f"{name} received {sender}'s messages to room {room} out of order")


def expect_next(clients, message):
    for name, client in clients.items():
        got = client.recv_text()
        expect(got == message, f"{name} received {got[:40]!r}, not {message[:40]!r}")


def check_rooms(port):
    """The room checks; returns how many messages it sent that a peer must ignore."""
    # Room a: three plain members, one that lists a three times (it is in a once), and one in 64
    # rooms, most of them named with 64 characters (the longest valid target). Room b: b. Both: ab.
    many_rooms = [f"{i:02d}" + "x" * (ROOM_NAME_BYTES_MAX - 2) for i in range(62)] + ["...", "a"]
    targets = {
        "a0": rooms_target("a"), "a1": rooms_target("a"), "a2": rooms_target("a"),
        "dup": rooms_target("a", "a", "a"), "many": rooms_target(*many_rooms),
        "b": rooms_target("b"), "ab": rooms_target("a", "b"),
    }
    c = {name: Client(port, target) for name, target in targets.items()}
    for name, client in c.items():
        expect(client.status == 101, f"upgrade at {targets[name][:80]} answered {client.status}")
    room_a = ["a0", "a1", "a2", "dup", "many"]

    # 100 from each of a0 and a1 to a, b to b, and ab alternately to a and b, interleaved;
    # non-ASCII text must come back unchanged.
    sent = {"a": [], "b": []}
    for i in range(MESSAGES_PER_SENDER):
        for sender, room, text in [("a0", "a", f"a0 {i} é"), ("a1", "a", f"a1 {i} ✓"),
                                   ("b", "b", f"b {i}"), ("ab", "ab"[i % 2], f"ab {i}")]:
            message = f"{room}\n{text}"
            c[sender].send_text(message)
            sent[room].append(message)
    orders = {}
    for name in room_a:
        orders[name] = receive(c[name], name, len(sent["a"]))
        check_received(name, orders[name], sent["a"])
    for name in room_a[1:]:
        expect(orders[name] == orders["a0"], f"{name} and a0 saw room a in different orders")
    orders["b"] = receive(c["b"], "b", len(sent["b"]))
    check_received("b", orders["b"], sent["b"])
    both = receive(c["ab"], "ab", len(sent["a"]) + len(sent["b"]))
    check_received("ab", both, sent["a"] + sent["b"])
    expect([m for m in both if m.startswith("a\n")] == orders["a0"],
           "ab saw room a in another order than a0")
    expect([m for m in both if m.startswith("b\n")] == orders["b"],
           "ab saw room b in another order than b")

    # Dropped, without closing the sender: no newline, an invalid or empty room, a room the
    # sender is not in (b, or one nobody is in), a room that differs in case or by a CR.
    ignored = ["b\nnot a member", "no newline", "a", "bad!\nx", "\nempty room", "zzz\nnobody",
               "A\ncase", "a\r\ncrlf"]
    for message in ignored:
        c["a0"].send_text(message)
    c["b"].send_text("a\nb is not in a")
    # Each connection's messages are handled in order: once these arrive, the above were dropped.
    # An empty payload is a message like any other.
    c["a0"].send_text("a\n")
    c["a0"].send_text("a\nafter ignored")
    for name in room_a:
        expect_next({name: c[name]}, "a\n")
        expect_next({name: c[name]}, "a\nafter ignored")
    c["b"].send_text("b\nafter ignored")
    expect_next({"b": c["b"]}, "b\nafter ignored")
    got = [c["ab"].recv_text() for _ in range(3)]
    expect([m for m in got if m.startswith("a\n")] == ["a\n", "a\nafter ignored"]
           and "b\nafter ignored" in got, f"ab received {got}")

    # The largest allowed message passes; a binary frame and an oversized message do not.
    c["a2"].send_binary(b"a\nbinary frames are not chat messages")
    c["a2"].send_text("a\n" + "x" * (WS_MESSAGE_BYTES_MAX - 1))
    big = "a\n" + "y" * (WS_MESSAGE_BYTES_MAX - 2)
    c["a0"].send_text(big)
    expect_next({name: c[name] for name in ["a0", "a1", "dup", "many", "ab"]}, big)
    try:
        while True:
            message = c["a2"].recv_text()
            expect(message == big, "a2 received something other than the 64 KiB message")
    except (Closed, ConnectionResetError):
        pass  # the oversized message closed a2 (1009) or dropped its connection
    except TimeoutError:
        raise CheckFailed("an oversized message did not close its sender") from None

    # A late joiner is in each of its rooms as soon as it has its 101.
    late = Client(port, rooms_target("b", "a"))
    expect(late.status == 101, f"late upgrade answered {late.status}")
    late.send_text("a\nlate")
    expect_next({name: c[name] for name in ["a0", "a1", "dup", "many", "ab"]} | {"late": late},
                "a\nlate")

    # Room b heard nothing of room a: the next thing b receives is this message.
    c["b"].send_text("b\nend")
    expect_next({"b": c["b"], "ab": c["ab"], "late": late}, "b\nend")

    for client in list(c.values()) + [late]:
        client.close()
    return len(ignored) + 1


def check_peer(name):
    port = free_port()
    try:
        command = PEERS[name](port)
    except CheckFailed as failure:
        return str(failure)
    if not os.path.exists(command[0]) and os.sep in command[0]:
        return f"{command[0]} is missing; run bench/peers/install.sh"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    failure = None
    stderr = ""
    try:
        wait_ready(process, port)
        check_bad_targets(port)
        ignored = check_rooms(port)
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=IO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CheckFailed("still running 5 s after SIGTERM") from None
        expect(status in (0, -signal.SIGTERM), f"exited with status {status} on SIGTERM")
        stderr = process.stderr.read().decode(errors="replace").strip()
        # A peer that counts the messages it ignored (tokio-tungstenite) must count them all.
        counted = re.search(r"ignored_messages=(\d+)", stderr)
        expect(counted is None or int(counted[1]) == ignored,
               f"printed ignored_messages={counted and counted[1]}, not {ignored}")
    except CheckFailed as error:
        failure = str(error)
    except (OSError, Closed) as error:
        failure = f"{type(error).__name__}: {error}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        stderr = stderr or process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
    if failure and stderr:
        failure += "\n  its stderr:\n    " + stderr.replace("\n", "\n    ")
    return failure


def main():
    names = sys.argv[1:] or list(PEERS)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        sys.exit(f"unknown peer(s) {unknown}; known: {list(PEERS)}")
    failed = 0
    for name in names:
        started = time.monotonic()
        failure = check_peer(name)
        elapsed = time.monotonic() - started
        if failure:
            failed += 1
            print(f"FAIL {name}: {failure}")
        else:
            print(f"PASS {name} ({elapsed:.1f} s)")
    print(f"{len(names) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
