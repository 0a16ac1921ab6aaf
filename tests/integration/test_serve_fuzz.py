"""Randomised inputs against a running `cifar100 serve`: thousands of mutated PNG, JPEG, .npy and JSON bodies
(bytes flipped, truncated, spliced, inserted) under every content type. Every answer must be 200 (the
mutation left a valid input) or a 4xx with a JSON error body; never a 5xx, a dropped connection or a crash.
Then the server's resident memory must stay flat over a long run of mixed good and bad requests."""
import base64
import http.client
import io
import json
import os
import random
import sys
import unittest

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from harness import TempDirTest  # noqa: E402
from test_serve import DUMP, Server  # noqa: E402

import subprocess  # noqa: E402

CTYPES = ["image/png", "image/jpeg", "application/x-image", "application/x-npy", "application/json"]


def seeds():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    out = []
    for fmt in ("PNG", "JPEG"):
        b = io.BytesIO()
        Image.fromarray(img).save(b, fmt)
        out.append(b.getvalue())
    b = io.BytesIO()
    np.save(b, rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    out.append(b.getvalue())
    out.append(json.dumps({"instances": [base64.b64encode(out[0]).decode()], "top_k": 3}).encode())
    out.append(json.dumps({"instances": [img[:32, :32].tolist()]}).encode())
    return out


def mutate(data, r):
    data = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(5)
        if op == 0 and data:  # flip bytes
            for _ in range(r.randint(1, 8)):
                data[r.randrange(len(data))] = r.randrange(256)
        elif op == 1 and data:  # truncate
            del data[r.randrange(len(data)):]
        elif op == 2:  # insert random bytes
            pos = r.randint(0, len(data))
            data[pos:pos] = bytes(r.randrange(256) for _ in range(r.randint(1, 64)))
        elif op == 3 and len(data) > 8:  # splice a chunk elsewhere
            a = r.randrange(len(data))
            b = min(len(data), a + r.randint(1, 256))
            pos = r.randint(0, len(data))
            data[pos:pos] = data[a:b]
        elif op == 4 and data:  # header area damage
            data[r.randrange(min(len(data), 64))] ^= 1 << r.randrange(8)
    return bytes(data)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Fuzz(TempDirTest):
    def test_mutated_inputs_only_get_4xx_and_memory_stays_flat(self):
        subprocess.run([DUMP, "model", "10", "1", self.tmp], check=True, capture_output=True)
        s = Server(os.path.join(self.tmp, "model"))
        try:
            s.wait_ready()
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            r = random.Random(11)
            base = seeds()
            counts = {}

            def send(body, ctype):
                nonlocal conn
                try:
                    conn.request("POST", "/invocations", body=body, headers={"Content-Type": ctype})
                    resp = conn.getresponse()
                    data = resp.read()
                except (http.client.HTTPException, OSError) as e:
                    self.fail(f"connection failed on a {ctype} body of {len(body)} bytes: {e!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
                return resp.status, data

            def run(n):
                for i in range(n):
                    k = r.randrange(len(base))
                    ctype = CTYPES[k] if r.random() < 0.7 else r.choice(CTYPES)
                    body = mutate(base[k], r) if r.random() < 0.9 else base[k]
                    status, data = send(body, ctype)
                    counts[status] = counts.get(status, 0) + 1
                    self.assertIn(status, (200, 400, 413, 415), f"{ctype}, {len(body)} bytes -> {status}: {data[:200]}")
                    if status != 200:
                        err = json.loads(data)["error"]
                        self.assertTrue(err["code"] and err["message"])

            run(500)  # warm-up: allocator pools, thread stacks
            before = rss_kib(s.proc.pid)
            run(3000)
            after = rss_kib(s.proc.pid)
            self.assertIsNone(s.proc.poll(), "the server died")
            self.assertEqual(s.request("GET", "/ping")[0], 200)
            print(f"\nfuzz: {sum(counts.values())} requests, statuses {dict(sorted(counts.items()))}; "
                  f"server RSS {before / 1024:.1f} MiB after the warm-up, {after / 1024:.1f} MiB after 3000 more "
                  f"({(after - before) / 1024:+.1f} MiB)", file=sys.stderr)
            self.assertLess(after - before, 20 * 1024, f"RSS grew from {before} to {after} KiB")
            self.assertGreater(counts.get(400, 0), 100)
        finally:
            self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
