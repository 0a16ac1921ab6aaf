"""The serving stack `cifar100 serve` replaces, as a minimal Python server (the peer of bench/serve_load.sh):
http.server's ThreadingHTTPServer, PIL decode and resize, the tools/reference WideResNet in PyTorch eager fp32,
one request at a time (a global lock, as a single-worker model handler runs), top-5 JSON.
Usage: serve_reference.py MODEL_DIR PORT THREADS"""
import io
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from wrn import WideResNet  # noqa: E402

model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(model_dir, "config.json")))
model = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
model.load_state_dict(torch.load(os.path.join(model_dir, "model.pt")))
model.eval()
mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
names = cfg["class_names"]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200 if self.path == "/ping" else 404, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            im = Image.open(io.BytesIO(body)).convert("RGB")
            w, h = im.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            x = torch.from_numpy(np.asarray(im.resize((32, 32), Image.BILINEAR, box=box))).permute(2, 0, 1)
            x = (x.float().unsqueeze(0) / 255.0 - mean) / std
        except Exception as e:  # noqa: BLE001
            return self.reply(400, json.dumps({"error": str(e)}).encode())
        with lock, torch.no_grad():
            p = torch.softmax(model(x), 1)[0]
        top = torch.topk(p, 5)
        out = [{"class": int(c), "name": names[int(c)], "probability": float(v)} for v, c in zip(top.values, top.indices)]
        self.reply(200, json.dumps({"predictions": [{"top_k": out}]}).encode())


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
