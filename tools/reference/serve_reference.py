"""Python serving peers of bench/serve_load.sh, on the tools/reference WideResNet with the same weights:

  simple    the minimal stack `cifar100 serve` replaces: ThreadingHTTPServer, PIL decode and resize, one
            forward pass at a time (a global lock, as a single-worker model handler runs)
  batching  what TorchServe does, at its best: HTTP threads decode and enqueue; WORKERS inference workers
            each take up to MAX_BATCH queued images, waiting at most MAX_DELAY_MS after the first, and run
            one forward pass; warmed up on every batch size before it listens

Both run PyTorch at its fastest on this CPU for the precision: fp32 as a frozen TorchScript module with
oneDNN forced (torch.jit.freeze + optimize_for_inference), bf16 with the weights cast once
(model.to(torch.bfloat16)); inference_mode and channels-last. Answers top-5 JSON as `cifar100 serve` does.

Usage: serve_reference.py MODEL_DIR PORT THREADS [--mode simple|batching] [--precision fp32|bf16]
                          [--workers N] [--max-batch N] [--max-delay-ms MS]"""
import argparse
import io
import json
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("model_dir")
ap.add_argument("port", type=int)
ap.add_argument("threads", type=int)
ap.add_argument("--mode", choices=("simple", "batching"), default="simple")
ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--max-batch", type=int, default=64)
ap.add_argument("--max-delay-ms", type=float, default=0.0)
args = ap.parse_args()

torch.set_num_threads(args.threads)
with open(os.path.join(args.model_dir, "config.json")) as f:
    cfg = json.load(f)
model = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
model.load_state_dict(torch.load(os.path.join(args.model_dir, "model.pt")))
model = model.eval().to(memory_format=torch.channels_last)
dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
if args.precision == "bf16":
    net = model.to(torch.bfloat16)
else:
    with torch.no_grad():
        example = torch.randn(args.max_batch, 3, 32, 32).to(memory_format=torch.channels_last)
        net = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
names = cfg["class_names"]


def forward(x_u8):
    """N x 3 x 32 x 32 uint8 -> N x C probabilities (float32)."""
    x = ((x_u8.float() / 255.0 - mean) / std).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return torch.softmax(net(x).float(), 1)


def decode(body):
    im = Image.open(io.BytesIO(body)).convert("RGB")
    w, h = im.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return torch.from_numpy(np.asarray(im.resize((32, 32), Image.BILINEAR, box=box)).copy()).permute(2, 0, 1)


def top5(p):
    top = torch.topk(p, 5)
    return [{"class": int(c), "name": names[int(c)], "probability": float(v)} for v, c in zip(top.values, top.indices)]


lock = threading.Lock()
jobs = queue.Queue()


def worker():
    while True:
        batch = [jobs.get()]
        deadline = time.perf_counter() + args.max_delay_ms / 1000.0
        while len(batch) < args.max_batch:
            try:
                wait = deadline - time.perf_counter()
                batch.append(jobs.get(timeout=wait) if wait > 0 else jobs.get_nowait())
            except queue.Empty:
                break
        try:
            probs = forward(torch.stack([x for x, _ in batch]))
            for (_, slot), p in zip(batch, probs):
                slot["result"] = p
        except Exception as e:  # noqa: BLE001
            for _, slot in batch:
                slot["error"] = str(e)
        for _, slot in batch:
            slot["done"].set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json"):
        # Status line, headers and body in one write: one segment, no wait on the client's delayed ACK.
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + body)
        self._headers_buffer = []

    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            x = decode(body)
        except Exception as e:  # noqa: BLE001
            return self.reply(400, json.dumps({"error": str(e)}).encode())
        if args.mode == "simple":
            with lock:
                p = forward(x.unsqueeze(0))[0]
        else:
            slot = {"done": threading.Event()}
            jobs.put((x, slot))
            slot["done"].wait()
            if "error" in slot:
                return self.reply(500, json.dumps({"error": slot["error"]}).encode())
            p = slot["result"]
        self.reply(200, json.dumps({"predictions": [{"top_k": top5(p)}]}).encode())


# Warm-up on every batch size a worker may form, then listen.
for n in range(1, (args.max_batch if args.mode == "batching" else 1) + 1):
    forward(torch.zeros(n, 3, 32, 32, dtype=torch.uint8))
if args.mode == "batching":
    for _ in range(args.workers):
        threading.Thread(target=worker, daemon=True).start()
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # load generators hang up
            super().handle_error(request, client_address)


Server(("127.0.0.1", args.port), Handler).serve_forever()
