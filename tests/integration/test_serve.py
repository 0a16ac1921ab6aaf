"""`cifar100 serve` against a real running server on loopback: every route, every content type, every error
status with its JSON body, agreement with `predict`, concurrent clients with dynamic batching, the
queue-full path (503 + Retry-After), /ping under load, and SIGTERM draining."""
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, run  # noqa: E402

DUMP = os.environ.get("ARTIFACT_DUMP", "build/tests/artifact_dump")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(arr):
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


def npy_bytes(arr):
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


class Server:
    def __init__(self, model, *extra, env=None):
        self.port = free_port()
        env = dict(os.environ, **(env or {}))
        env.pop("SAGEMAKER_BIND_TO_PORT", None)
        model_args = ["--model", model] if model else []  # None: the default ($SAGEMAKER_BASE_DIR/model, ...)
        self.proc = subprocess.Popen([BIN, "serve"] + model_args + ["--port", str(self.port), "--host", "127.0.0.1",
                                                                    "--threads", "2"] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def wait_ready(self, timeout=60):
        t0, saw_503 = time.time(), False
        while time.time() - t0 < timeout:
            try:
                status, _, _ = self.request("GET", "/ping", timeout=2)
                if status == 200:
                    return saw_503
                saw_503 |= status == 503
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server not ready:\n" + "".join(self.lines))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


class Serve(TempDirTest):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.shared = tempfile.mkdtemp(prefix="cifar100-serve-")
        subprocess.run([DUMP, "model", "10", "2", cls.shared], check=True, capture_output=True)
        cls.model = os.path.join(cls.shared, "model")
        cls.server = Server(cls.model)
        cls.server.wait_ready()
        rng = np.random.default_rng(0)
        cls.imgs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        import shutil
        shutil.rmtree(cls.shared, ignore_errors=True)
        assert rc == 0, f"server exit {rc}"

    def invoke(self, body, ctype, accept="application/json", query=""):
        return self.server.request("POST", "/invocations" + query, body, {"Content-Type": ctype, "Accept": accept})

    def assertError(self, resp, status, code=None):
        st, headers, data = resp
        self.assertEqual(st, status, data)
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"), headers)
        err = json.loads(data)["error"]
        self.assertIn("message", err)
        if code:
            self.assertEqual(err["code"], code, err)
        return err

    def test_routes(self):
        st, _, body = self.server.request("GET", "/ping")
        self.assertEqual((st, body), (200, b""))
        st, _, body = self.server.request("GET", "/execution-parameters")
        self.assertEqual(st, 200)
        p = json.loads(body)
        self.assertEqual(p["BatchStrategy"], "MULTI_RECORD")
        self.assertEqual(p["MaxPayloadInMB"], 6)
        self.assertGreaterEqual(p["MaxConcurrentTransforms"], 1)
        st, headers, body = self.server.request("GET", "/")
        self.assertEqual(st, 200)
        self.assertIn("text/html", headers["Content-Type"])
        self.assertIn(b"/app.js", body)
        st, headers, body = self.server.request("GET", "/app.js")
        self.assertEqual(st, 200)
        self.assertIn(b"/invocations", body)
        self.assertError(self.server.request("GET", "/nope"), 404, "not_found")
        err = self.assertError(self.server.request("POST", "/ping", b"x"), 405, "method_not_allowed")
        self.assertIn("GET", err["message"])
        self.assertError(self.server.request("GET", "/invocations"), 405)
        self.assertError(self.server.request("DELETE", "/metrics"), 405)
        self.invoke(png_bytes(self.imgs[0]), "image/png")
        st, headers, body = self.server.request("GET", "/metrics")
        self.assertEqual(st, 200)
        text = body.decode()
        for needle in ('cifar100_requests_total{route="/invocations",code="200"}', "cifar100_request_seconds_bucket",
                       "cifar100_batch_images_count", "cifar100_queue_images", "cifar100_model_load_seconds"):
            self.assertIn(needle, text)

    def test_content_types_agree(self):
        img = self.imgs[1]
        answers = []
        for ctype, body in (("image/png", png_bytes(img)), ("application/x-image", png_bytes(img)),
                            ("application/x-npy", npy_bytes(img)),
                            ("application/json", json.dumps({"instances": [base64.b64encode(png_bytes(img)).decode()]})),
                            ("application/json", json.dumps({"instances": [{"b64": base64.b64encode(png_bytes(img)).decode()}]})),
                            ("application/json", json.dumps({"instances": [img.tolist()]}))):
            st, headers, data = self.invoke(body, ctype)
            self.assertEqual(st, 200, (ctype, data))
            preds = json.loads(data)["predictions"]
            self.assertEqual(len(preds), 1)
            self.assertEqual(len(preds[0]["top_k"]), 5)
            answers.append(preds[0]["top_k"])
        for a in answers[1:]:
            self.assertEqual([t["class"] for t in a], [t["class"] for t in answers[0]])
            for x, y in zip(a, answers[0]):
                self.assertAlmostEqual(x["probability"], y["probability"], places=5)
        # JPEG: the answer for the pixels PIL decodes. A large JPEG is decoded with libjpeg's DCT scaling, as
        # PIL's draft() does, then centre-cropped and resized: the same pixels as PIL, so the same probabilities.
        rng = np.random.default_rng(5)
        big = (rng.integers(0, 256, (15, 20, 3)).repeat(32, 0).repeat(32, 1)).astype(np.uint8)  # 640x480
        for arr, scaled in ((img, (32, 32)), (big, (80, 60))):
            b = io.BytesIO()
            Image.fromarray(arr).save(b, "JPEG", quality=90)
            ref = Image.open(io.BytesIO(b.getvalue()))
            ref.draft("RGB", (32, 32))
            self.assertEqual(ref.size, scaled)
            ref = ref.convert("RGB")
            side = min(ref.size)
            left, top = (ref.size[0] - side) // 2, (ref.size[1] - side) // 2
            ref = ref.resize((32, 32), Image.BILINEAR, box=(left, top, left + side, top + side))
            st, _, want = self.invoke(npy_bytes(np.asarray(ref)), "application/x-npy", accept="application/x-npy")
            self.assertEqual(st, 200, want)
            st, headers, got = self.invoke(b.getvalue(), "image/jpeg", accept="application/x-npy")
            self.assertEqual(st, 200, got)
            np.testing.assert_array_equal(np.load(io.BytesIO(got)), np.load(io.BytesIO(want)))
        # The same answer as `predict` on the same PNG file.
        path = os.path.join(self.tmp, "x.png")
        with open(path, "wb") as f:
            f.write(png_bytes(img))
        r = run(["predict", "--model", self.model, "--json", "--threads", "2", path])
        self.assertOk(r)
        top = json.loads(r.stdout)["predictions"][0]["top_k"]
        self.assertEqual([t["class"] for t in top], [t["class"] for t in answers[0]])

    def test_batches_top_k_and_npy_answers(self):
        batch = np.stack(self.imgs)
        st, headers, data = self.invoke(npy_bytes(batch), "application/x-npy", accept="application/x-npy")
        self.assertEqual(st, 200, data)
        self.assertEqual(headers["Content-Type"], "application/x-npy")
        probs = np.load(io.BytesIO(data))
        self.assertEqual(probs.shape, (4, 100))
        self.assertEqual(probs.dtype, np.float32)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
        st, _, data = self.invoke(npy_bytes(batch), "application/x-npy", query="?top_k=3")
        preds = json.loads(data)["predictions"]
        self.assertEqual([len(p["top_k"]) for p in preds], [3, 3, 3, 3])
        self.assertEqual([p["top_k"][0]["class"] for p in preds], list(probs.argmax(1)))
        body = json.dumps({"instances": [i.tolist() for i in self.imgs[:2]], "top_k": 2})
        st, _, data = self.invoke(body, "application/json")
        self.assertEqual([len(p["top_k"]) for p in json.loads(data)["predictions"]], [2, 2])

    def test_every_error_status(self):
        img = png_bytes(self.imgs[0])
        self.assertError(self.invoke(img[:len(img) // 2], "image/png"), 400, "bad_image")
        self.assertError(self.invoke(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png"), 400)
        self.assertError(self.invoke(b"GIF89a\x01\x00\x01\x00", "image/gif"), 415, "unsupported_content_type")
        self.assertError(self.invoke(b"GIF89a\x01\x00\x01\x00", "application/x-image"), 415, "unsupported_image_format")
        self.assertError(self.invoke(b"hello", "text/plain"), 415)
        self.assertError(self.invoke(b"{not json", "application/json"), 400, "bad_json")
        self.assertError(self.invoke(json.dumps({"images": []}), "application/json"), 400, "bad_json")
        self.assertError(self.invoke(json.dumps({"instances": ["!!!"]}), "application/json"), 400, "bad_base64")
        self.assertError(self.invoke(json.dumps({"instances": [[[1, 2]]]}), "application/json"), 400, "bad_instance")
        self.assertError(self.invoke(npy_bytes(np.zeros((8, 8, 3), np.uint8)), "application/x-npy"), 400, "bad_npy")
        self.assertError(self.invoke(npy_bytes(np.zeros((32, 32, 3), np.float32)), "application/x-npy"), 415)
        self.assertError(self.invoke(b"", "image/png"), 400, "empty_body")
        self.assertError(self.invoke(img, "image/png", query="?top_k=0"), 400, "bad_top_k")
        self.assertError(self.invoke(img, "image/png", query="?top_k=1000"), 400, "bad_top_k")
        self.assertError(self.invoke(img, "image/png", accept="text/html"), 406, "not_acceptable")
        self.assertError(self.invoke(b"\x00" * (7 << 20), "application/x-npy"), 413, "payload_too_large")
        # Decoding budgets, from the headers: 4 megapixels an image, 32 a request (nine 2000x2000 images).
        b = io.BytesIO()
        Image.new("1", (2001, 2000)).save(b, "PNG")
        self.assertError(self.invoke(b.getvalue(), "image/png"), 413, "image_too_large")
        b = io.BytesIO()
        Image.new("1", (2000, 2000)).save(b, "PNG")
        four_mp = base64.b64encode(b.getvalue()).decode()
        self.assertError(self.invoke(json.dumps({"instances": [four_mp] * 9}), "application/json"), 413,
                         "too_many_pixels")
        st, _, data = self.invoke(json.dumps({"instances": [four_mp] * 2}), "application/json")
        self.assertEqual(st, 200, data)
        too_many = npy_bytes(np.zeros((300, 32, 32, 3), np.uint8))
        self.assertError(self.invoke(too_many, "application/x-npy"), 413, "too_many_images")
        # The server is still fine.
        self.assertEqual(self.invoke(img, "image/png")[0], 200)

    def test_concurrent_clients_are_batched(self):
        body = png_bytes(self.imgs[2])
        before = self._batches()
        results, pings = [], []

        def client():
            for _ in range(6):
                results.append(self.invoke(body, "image/png")[0])

        def pinger():
            for _ in range(20):
                t = time.time()
                self.server.request("GET", "/ping")
                pings.append(time.time() - t)
                time.sleep(0.02)

        threads = [threading.Thread(target=client) for _ in range(24)] + [threading.Thread(target=pinger)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 144)
        n_batches, n_images = [a - b for a, b in zip(self._batches(), before)]
        self.assertEqual(n_images, 144)
        self.assertLess(n_batches, 144, "concurrent requests were never batched together")
        self.assertLess(max(pings), 2.0, f"/ping took {max(pings):.3f} s under load")
        print(f"\n144 concurrent requests in {n_batches} forward passes; /ping max {1000 * max(pings):.1f} ms "
              f"under load", file=sys.stderr)

    def _batches(self):
        text = self.server.request("GET", "/metrics")[2].decode()
        count = float(text.split("cifar100_batch_images_count ")[1].split()[0])
        total = float(text.split("cifar100_batch_images_sum ")[1].split()[0])
        return count, total


class ServeLifecycle(TempDirTest):
    def setUp(self):
        super().setUp()
        subprocess.run([DUMP, "model", "10", "2", self.tmp], check=True, capture_output=True)
        self.model = os.path.join(self.tmp, "model")

    def test_queue_full_answers_503_with_retry_after(self):
        s = Server(self.model, "--queue", "1", "--max-batch", "1", "--max-wait-ms", "0")
        try:
            s.wait_ready()
            body = npy_bytes(np.zeros((1, 32, 32, 3), np.uint8))
            out = []

            def client():
                st, headers, data = s.request("POST", "/invocations", body, {"Content-Type": "application/x-npy"})
                out.append((st, headers.get("Retry-After"), data))

            threads = [threading.Thread(target=client) for _ in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = [o[0] for o in out]
            self.assertIn(200, codes)
            self.assertIn(503, codes, codes)
            self.assertEqual(set(codes), {200, 503})
            full = [o for o in out if o[0] == 503][0]
            self.assertEqual(full[1], "1")
            self.assertEqual(json.loads(full[2])["error"]["code"], "queue_full")
        finally:
            self.assertEqual(s.stop(), 0)

    def test_sigterm_finishes_requests_in_flight(self):
        s = Server(self.model, "--max-wait-ms", "200")
        s.wait_ready()
        body = npy_bytes(np.zeros((64, 32, 32, 3), np.uint8))
        out = []

        def client():
            out.append(s.request("POST", "/invocations", body, {"Content-Type": "application/x-npy"})[0])

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.1)  # the requests are in flight (the batcher waits up to 200 ms)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        rc = s.proc.wait(30)
        self.assertEqual(rc, 0)
        self.assertLess(time.time() - t0, 30)
        self.assertEqual(out, [200] * 8)
        log = "".join(s.lines)
        self.assertIn("stopping", log)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=1)

    def test_stalled_clients_are_dropped_and_connections_are_bounded(self):
        s = Server(self.model, "--read-timeout", "1", "--idle-timeout", "1", "--http-threads", "2", "--max-pending", "2")
        try:
            s.wait_ready()
            # A client that sends half a request and stalls is answered 408 and disconnected after the read timeout.
            stalled = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            stalled.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            t0 = time.time()
            answer = b""
            while chunk := stalled.recv(4096):
                answer += chunk
            self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
            self.assertIn(b"Connection: close", answer)
            self.assertIn(b'"request_timeout"', answer)
            self.assertGreater(time.time() - t0, 0.9)
            self.assertLess(time.time() - t0, 5)
            stalled.close()
            # Idle keep-alive clients hold no handler thread: with both threads' worth of them open, a third
            # client is served at once.
            idle = []
            for _ in range(2):
                c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
                c.request("GET", "/ping")
                c.getresponse().read()
                idle.append(c)
            t0 = time.time()
            self.assertEqual(s.request("GET", "/ping", timeout=10)[0], 200)
            self.assertLess(time.time() - t0, 0.5)
            for c in idle:
                c.close()
        finally:
            self.assertEqual(s.stop(), 0)

    def test_ping_is_503_until_loaded_and_sigterm_during_startup(self):
        s = Server(self.model, env={"CIFAR100_TEST_LOAD_DELAY_MS": "1500"})
        try:
            self.assertTrue(s.wait_ready(), "/ping never answered 503 while the model was loading")
        finally:
            self.assertEqual(s.stop(), 0)
        # SIGTERM while the model is still loading stops the server at once.
        s = Server(self.model, env={"CIFAR100_TEST_LOAD_DELAY_MS": "60000"})
        t0 = time.time()
        while time.time() - t0 < 20:
            try:
                st, h, body = s.request("GET", "/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        self.assertEqual(st, 503)
        self.assertEqual(json.loads(body)["error"]["code"], "loading")
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 3.0)
        time.sleep(0.2)
        self.assertIn("stopped before the model finished loading", "".join(s.lines))

    def test_draining_answers_accepted_connections_and_ping_turns_503(self):
        s = Server(self.model, "--max-wait-ms", "1000", "--max-connections", "2")
        s.wait_ready()
        # A request in flight (the batcher waits 1 s for company) keeps the server draining for a while.
        slow = []
        t = threading.Thread(target=lambda: slow.append(
            s.request("POST", "/invocations", npy_bytes(np.zeros((32, 32, 3), np.uint8)),
                      {"Content-Type": "application/x-npy"})[0]))
        t.start()
        time.sleep(0.2)
        # An open connection that has not sent its request yet, and two beyond --max-connections that wait in
        # the kernel's listen backlog, not yet accepted by the server.
        opened = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        time.sleep(0.1)
        backlog = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(2)]
        for b in backlog:
            b.sendall(b"GET /execution-parameters HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        opened.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = []
        for c in [opened] + backlog:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            answers.append(data)
            c.close()
        t.join()
        self.assertEqual(s.proc.wait(30), 0)
        self.assertEqual(slow, [200])
        self.assertTrue(answers[0].startswith(b"HTTP/1.1 503 "), answers[0])
        self.assertIn(b'"stopping"', answers[0])
        self.assertIn(b"Connection: close", answers[0])
        for a in answers[1:]:
            self.assertTrue(a.startswith(b"HTTP/1.1 200 "), a)
            self.assertIn(b"Connection: close", a)
            self.assertIn(b"MaxPayloadInMB", a)

    def test_ping_is_503_until_loaded_and_bad_models(self):
        # A model directory that is not an artifact: refused at start with exit 1.
        r = run(["serve", "--model", self.tmp + "/nothing", "--port", str(free_port())])
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)
        # SAGEMAKER_BIND_TO_PORT picks the port when --port is not given.
        port = free_port()
        env = dict(os.environ, SAGEMAKER_BIND_TO_PORT=str(port))
        p = subprocess.Popen([BIN, "serve", "--model", self.model, "--host", "127.0.0.1"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            t0 = time.time()
            while time.time() - t0 < 30:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/ping")
                    st = c.getresponse().status
                    c.close()
                    if st == 200:
                        break
                    self.assertEqual(st, 503)
                except OSError:
                    pass
                time.sleep(0.02)
            self.assertEqual(st, 200)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(30), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
