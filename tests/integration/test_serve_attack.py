"""`cifar100 serve` under attack, on loopback, every loop bounded: a gzip bomb, a chunked body over the limit, a
body with no length, 100 slowloris connections, header floods, a flood of 40-megapixel PNGs of a few kB, a
progressive-JPEG scan bomb, 6 MB of `[{},{},...]` JSON and connection churn.

A separate process (serve_monitor.py) pings /ping every 20 ms, sends a valid PNG every 100 ms and samples the
server's resident memory throughout. Each attack must get its refusal, /ping must stay fast (p99 under 50 ms,
and no ping slower than 50 ms), every valid request must be answered 200, resident memory must stay within
RSS_BOUND_MIB of its level before the attacks, and the server must end cleanly with exit 0."""
import gzip
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from harness import TempDirTest  # noqa: E402
from test_serve import DUMP, Server, png_bytes  # noqa: E402

RSS_BOUND_MIB = 96
PING_P99_MS = 50.0
PING_MAX_MS = 50.0


def read_response(sock, timeout=10.0):
    """Reads one HTTP response from a raw socket: (status, headers dict, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def send_ignoring_reset(sock, data, step=65536):
    """Sends until done or until the server closes the connection (it may answer before reading it all)."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + step])
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def progressive_jpeg(size, seed=0, flat=False):
    rng = np.random.default_rng(seed)
    b = io.BytesIO()
    img = Image.new("RGB", (size, size), (120, 130, 140)) if flat else \
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    img.save(b, "JPEG", quality=90, progressive=True)
    return b.getvalue()


def jpeg_segments(data):
    """Splits a JPEG into (marker, bytes) pieces; a scan's piece holds its entropy-coded data too."""
    out, i = [(0xD8, data[:2])], 2
    while i < len(data):
        assert data[i] == 0xFF, i
        m = data[i + 1]
        if m == 0xD9:
            out.append((m, data[i:i + 2]))
            break
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        j = i + 2 + n
        if m == 0xDA:
            while not (data[j] == 0xFF and data[j + 1] != 0 and not 0xD0 <= data[j + 1] <= 0xD7):
                j += 1
        out.append((m, data[i:j]))
        i = j
    return out


def scan_bomb(scans):
    """A flat 2000x2000 progressive JPEG whose last (refinement) scan, 14 bytes, is repeated: libjpeg runs a
    pass over all 4 megapixels' coefficients for every copy."""
    segs = jpeg_segments(progressive_jpeg(2000, flat=True))
    last_scan = [s for m, s in segs if m == 0xDA][-1]
    body = b"".join(s for m, s in segs if m != 0xD9)
    return body + last_scan * (scans - sum(1 for m, _ in segs if m == 0xDA)) + b"\xff\xd9"


class Attacks(TempDirTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = tempfile.mkdtemp(prefix="cifar100-attack-")
        subprocess.run([DUMP, "model", "10", "2", cls.shared], check=True, capture_output=True)
        cls.server = Server(os.path.join(cls.shared, "model"), "--read-timeout", "2", "--request-deadline", "3",
                            "--idle-timeout", "2")
        cls.server.wait_ready()
        cls.port = cls.server.port
        cls.png = os.path.join(cls.shared, "valid.png")
        with open(cls.png, "wb") as f:
            f.write(png_bytes(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
        cls.samples = os.path.join(cls.shared, "samples.txt")
        cls.stop_file = os.path.join(cls.shared, "stop")
        cls.monitor = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "serve_monitor.py"),
                                        str(cls.port), str(cls.server.proc.pid), cls.png, cls.samples, cls.stop_file])
        time.sleep(1.0)
        cls.baseline_kib = max(cls.rss_since(0) or [0])
        cls.report = []

    @classmethod
    def tearDownClass(cls):
        open(cls.stop_file, "w").close()
        cls.monitor.wait(30)
        rc = cls.server.stop()
        print("\nattack                        pings  p50 ms  p99 ms  max ms  valid  peak RSS MiB (baseline %.1f)"
              % (cls.baseline_kib / 1024), file=sys.stderr)
        for row in cls.report:
            print("%-28s %6d %7.2f %7.2f %7.2f %6d %8.1f" % row, file=sys.stderr)
        import shutil
        shutil.rmtree(cls.shared, ignore_errors=True)
        assert rc == 0, f"server exit {rc}"

    @classmethod
    def lines_since(cls, t0):
        with open(cls.samples) as f:
            return [line.split() for line in f if line.strip() and float(line.split()[1]) >= t0]

    @classmethod
    def rss_since(cls, t0):
        return [int(p[2]) for p in cls.lines_since(t0) if p[0] == "rss" and int(p[2]) > 0]

    def attack(self, name, fn):
        """Runs one attack with the monitor watching, then checks /ping, valid requests and memory over it."""
        t0 = time.time()
        fn()
        time.sleep(0.3)  # a few more samples after the attack
        self.assertIsNone(self.server.proc.poll(), f"the server died during {name}")
        lines = self.lines_since(t0)
        pings = sorted(float(p[2]) for p in lines if p[0] == "ping")
        ping_status = {p[3] for p in lines if p[0] == "ping"}
        valid = [p[3] for p in lines if p[0] == "valid"]
        rss = self.rss_since(t0)
        errors = [p for p in lines if p[0] == "error"]
        self.assertEqual(errors, [], f"{name}: monitor requests failed")
        self.assertGreater(len(pings), 3, name)
        self.assertEqual(ping_status, {"200"}, name)
        self.assertTrue(valid and set(valid) == {"200"}, f"{name}: valid requests got {valid}")
        p50, p99 = pings[len(pings) // 2], pings[min(len(pings) - 1, int(len(pings) * 0.99))]
        self.report.append((name, len(pings), p50, p99, pings[-1], len(valid), max(rss) / 1024))
        self.assertLess(p99, PING_P99_MS, f"{name}: /ping p99 {p99:.1f} ms")
        self.assertLess(pings[-1], PING_MAX_MS, f"{name}: slowest /ping {pings[-1]:.1f} ms")
        self.assertLess(max(rss) - self.baseline_kib, RSS_BOUND_MIB * 1024,
                        f"{name}: RSS grew from {self.baseline_kib} to {max(rss)} KiB")

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def test_gzip_bomb(self):
        bomb = gzip.compress(b"\0" * (256 << 20), 9)  # 256 MiB of zeros in about 250 kB

        def go():
            for _ in range(20):
                s = self.connect()
                head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                        f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n").encode()
                send_ignoring_reset(s, head + bomb)
                st, h, body = read_response(s)
                s.close()
                self.assertEqual(st, 415, body)
                self.assertEqual(h.get("connection"), "close")
                self.assertIn("Content-Encoding", json.loads(body)["error"]["message"])
        self.attack("gzip bomb", go)

    def test_chunked_over_limit(self):
        def go():
            for _ in range(5):
                s = self.connect()
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
                t0 = time.time()
                send_ignoring_reset(s, chunk * 160)  # 10 MiB, over the 6 MiB limit
                st, h, body = read_response(s)
                s.close()
                self.assertEqual(st, 413, body)
                self.assertEqual(h.get("connection"), "close")
                self.assertLess(time.time() - t0, 5)
            # A chunked body within the limit is accepted.
            s = self.connect()
            with open(self.png, "rb") as f:
                png = f.read()
            s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(png) + png + b"\r\n0\r\n\r\n")
            st, _, body = read_response(s)
            s.close()
            self.assertEqual(st, 200, body)
        self.attack("chunked > limit", go)

    def test_body_without_length(self):
        def go():
            for _ in range(10):
                s = self.connect()
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n")
                send_ignoring_reset(s, b"\0" * (1 << 20))
                st, h, body = read_response(s)
                s.close()
                self.assertEqual(st, 411, body)
                self.assertEqual(h.get("connection"), "close")
        self.attack("no length", go)

    def test_slowloris(self):
        def go():
            socks = [self.connect() for _ in range(100)]
            for s in socks:
                s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
            t0 = time.time()
            alive = list(socks)
            answers = []
            while alive and time.time() - t0 < 8:  # one header byte per connection every 200 ms
                for s in list(alive):
                    try:
                        s.sendall(b"X")
                    except OSError:
                        alive.remove(s)
                time.sleep(0.2)
            for s in socks:
                try:
                    answers.append(read_response(s, timeout=5)[0])
                except OSError:
                    answers.append(0)
                s.close()
            # The whole-request deadline (3 s here) ends every one of them with 408.
            self.assertEqual(alive, [], "slowloris connections still open after 8 s")
            self.assertLess(time.time() - t0, 9)
            self.assertEqual(answers, [408] * 100)
        self.attack("slowloris x100", go)

    def test_header_flood(self):
        def go():
            many = b"".join(b"X-%d: y\r\n" % i for i in range(1000))  # 1,000 short lines (10 kB)
            big = b"X-Big: " + b"a" * (64 << 10) + b"\r\n"             # one 64 kB line
            endless = b"X: " + b"b" * 1000 + b"\r\n"                      # lines without end
            for extra in (many, big):
                s = self.connect()
                send_ignoring_reset(s, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
                st, _, body = read_response(s)
                s.close()
                self.assertEqual(st, 431, body)
            s = self.connect()
            sent = send_ignoring_reset(s, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + endless * 10000)  # 10 MB
            st, _, _ = read_response(s)
            s.close()
            self.assertEqual(st, 431)
            self.assertLess(sent, 10 * 1000 * 1000, "the server read a 10 MB header")
        self.attack("header flood", go)

    def test_megapixel_png_flood(self):
        b = io.BytesIO()
        Image.new("1", (8000, 5000)).save(b, "PNG", optimize=True)  # 40 megapixels
        png = b.getvalue()
        self.assertLess(len(png), 16 << 10)

        def one(results):
            for _ in range(25):
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("POST", "/invocations", png, {"Content-Type": "image/png"})
                r = c.getresponse()
                results.append((r.status, json.loads(r.read())["error"]["code"]))
                c.close()

        def go():
            results = []
            threads = [threading.Thread(target=one, args=(results,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(results, [(413, "image_too_large")] * 200)
        self.attack(f"40 MP PNG x200 ({len(png) >> 10} kB)", go)

    def test_jpeg_scan_bomb(self):
        bomb = scan_bomb(5000)
        self.assertLess(len(bomb), 128 << 10)
        normal = progressive_jpeg(256)

        def go():
            for _ in range(5):
                t0 = time.time()
                st, _, body = self.server.request("POST", "/invocations", bomb, {"Content-Type": "image/jpeg"})
                self.assertEqual(st, 400, body)
                self.assertIn("scans", json.loads(body)["error"]["message"])
                self.assertLess(time.time() - t0, 1.0)
            st, _, body = self.server.request("POST", "/invocations", normal, {"Content-Type": "image/jpeg"})
            self.assertEqual(st, 200, body)
        self.attack(f"JPEG scan bomb ({len(bomb) >> 10} kB)", go)

    def test_json_of_empty_objects(self):
        n = (6 << 20) // 3 - 20
        objects = b'{"instances": [' + b"{}," * n + b"{}]}"
        arrays = b'{"instances": [' + b"[]," * n + b"[]]}"
        self.assertLessEqual(len(objects), 6 << 20)

        def go():
            for body in (objects, arrays):
                for _ in range(3):
                    t0 = time.time()
                    st, _, data = self.server.request("POST", "/invocations", body,
                                                      {"Content-Type": "application/json"})
                    self.assertIn(st, (400, 413), data)
                    self.assertIn(json.loads(data)["error"]["code"], ("bad_json", "json_too_large"))
                    self.assertLess(time.time() - t0, 2.0)
        self.attack("6 MB [{},...] JSON", go)

    def test_connection_churn(self):
        fds_before = len(os.listdir(f"/proc/{self.server.proc.pid}/fd"))

        def one():
            for i in range(250):
                s = self.connect()
                if i % 3 == 1:
                    s.sendall(b"GET /pi")
                elif i % 3 == 2:
                    s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    read_response(s)
                s.close()

        def go():
            threads = [threading.Thread(target=one) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.5)
            # Every connection was closed: no descriptor leaked.
            self.assertLessEqual(len(os.listdir(f"/proc/{self.server.proc.pid}/fd")), fds_before + 2)
        self.attack("churn x2000", go)


if __name__ == "__main__":
    unittest.main(verbosity=2)
