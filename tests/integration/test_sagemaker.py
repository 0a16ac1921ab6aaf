"""`cifar100 train` and `serve` under the SageMaker contract, with the host's binary and a fake /opt/ml
($SAGEMAKER_BASE_DIR): string hyperparameters, the channel layouts, the outputs, the metric definitions
against the real log lines, every failure writing output/failure, and the hosting variables.
(tests/container/test_image.py runs the same contract in the real image.)"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, TempDirTest, read_json, read_jsonl, run  # noqa: E402
from test_serve import DUMP, Server, npy_bytes, png_bytes  # noqa: E402

HPS = {"depth": "10", "width": "1", "epochs": "2", "batch-size": "32", "val_size": "200", "warmup_epochs": "0",
       "log_interval": "10", "sagemaker_program": "train.py", "_tuning_objective_metric": "val_top1"}


def metric_definitions():
    r = run(["sagemaker", "metric-definitions"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Layout(TempDirTest):
    """A fake /opt/ml for one test."""

    def layout(self, hps=HPS, idc=None, channels=("train", "test"), n_train=1200, n_test=300):
        base = os.path.join(self.tmp, "opt-ml")
        os.makedirs(os.path.join(base, "input", "config"))
        with open(os.path.join(base, "input", "config", "hyperparameters.json"), "w") as f:
            json.dump(hps, f)
        if idc is not None:
            with open(os.path.join(base, "input", "config", "inputdataconfig.json"), "w") as f:
                json.dump(idc, f)
        with open(os.path.join(base, "input", "config", "resourceconfig.json"), "w") as f:
            json.dump({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}, f)
        if channels:
            data = self.fake_data(train=n_train, test=n_test)
            for ch, files in (("train", ["train.bin", "fine_label_names.txt", "coarse_label_names.txt"]),
                              ("test", ["test.bin"])):
                if ch in channels:
                    d = os.path.join(base, "input", "data", ch)
                    os.makedirs(d)
                    for f in files:
                        os.link(os.path.join(data, f), os.path.join(d, f))
        return base

    def train(self, base, *args, env=None, timeout=600):
        e = {"SAGEMAKER_BASE_DIR": base, "TRAINING_JOB_NAME": "cifar100-it-job",
             "XDG_CACHE_HOME": os.path.join(self.tmp, "cache")}
        e.update(env or {})
        return run(["train"] + list(args), env=e, timeout=timeout)

    def failure(self, base):
        with open(os.path.join(base, "output", "failure")) as f:
            return f.read()


class Training(Layout):
    def test_training_job_writes_model_outputs_and_metrics(self):
        base = self.layout(idc={"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"},
                                "test": {"TrainingInputMode": "FastFile"}})
        r = self.train(base)
        self.assertOk(r)
        self.assertIn(f"SageMaker training layout found at {base}: job cifar100-it-job", r.stdout)
        self.assertIn("ignoring platform hyperparameters: _tuning_objective_metric, sagemaker_program", r.stdout)
        self.assertRegex(r.stdout, r"batch_size: 32\s+\(hyperparameters\)")
        self.assertRegex(r.stdout, r"checkpoint_dir: .*/checkpoints\s+\(SageMaker layout\)")
        # The artifact, loadable by eval, in model/; results, metrics, report and config in output/data.
        model = os.path.join(base, "model")
        self.assertEqual(sorted(os.listdir(model)), ["config.json", "model.pt", "model.safetensors"])
        out = os.path.join(base, "output", "data")
        self.assertEqual(sorted(os.listdir(out)),
                         ["config.yaml", "metrics.jsonl", "report", "report.html", "results.json", "tensorboard"])
        self.assertEqual(sorted(os.listdir(os.path.join(out, "report"))),
                         ["augmented_samples.png", "confusion.csv", "confusion.png", "gallery.json", "metrics.json",
                          "per_class.csv"])
        self.assertTrue(os.listdir(os.path.join(out, "tensorboard"))[0].startswith("events.out.tfevents."))
        results = read_json(os.path.join(out, "results.json"))
        self.assertEqual(results["sagemaker"]["job_name"], "cifar100-it-job")
        self.assertEqual(read_json(os.path.join(model, "config.json"))["training"]["source"]["training_job"],
                         "cifar100-it-job")
        report = read_json(os.path.join(out, "report", "metrics.json"))
        self.assertAlmostEqual(report["top1"], results["test_top1"], places=6)
        self.assertEqual(report["images"], 300)
        self.assertEqual(len(read_jsonl(os.path.join(out, "metrics.jsonl"))), 2)
        self.assertFalse(os.path.exists(os.path.join(base, "output", "failure")))
        self.assertTrue(any(n.startswith("best-") for n in os.listdir(os.path.join(base, "checkpoints"))))
        # No weights files in output/data (every byte there is uploaded; the artifact has them).
        self.assertFalse([n for n in os.listdir(out) if n.endswith(".pt")])
        r2 = run(["eval", "--model", model, "--data-dir", self.fake_data(name="d2", train=1200, test=300)])
        self.assertOk(r2)
        # Every MetricDefinitions regex matches the job's log lines and captures a number.
        defs = metric_definitions()
        self.assertLessEqual(len(defs), 40)
        for d in defs:
            self.assertLessEqual(len(d["Regex"]), 500)
            values = [m.group(1) for m in re.finditer(d["Regex"], r.stdout)]
            self.assertTrue(values, f"{d['Name']}: {d['Regex']} matches no log line")
            for v in values:
                float(v)
        epochs = [int(v) for v in re.findall(next(d["Regex"] for d in defs if d["Name"] == "epoch"), r.stdout)]
        self.assertEqual(epochs, [1, 2])
        top1 = float(re.search(next(d["Regex"] for d in defs if d["Name"] == "test_top1"), r.stdout).group(1))
        self.assertAlmostEqual(top1, results["test_top1"], places=4)
        names = {d["Name"] for d in defs}
        for need in ("train_loss", "train_acc", "val_loss", "val_top1", "lr", "images_per_second", "test_top1",
                     "test_top5"):
            self.assertIn(need, names)

    def test_archive_channel_and_preset_hyperparameter(self):
        base = self.layout(hps=dict(HPS, config="quick-cpu", epochs="1", val_size="100"), channels=())
        ch = os.path.join(base, "input", "data", "training")
        os.makedirs(ch)
        self.fake_data(name="arch", train=800, test=200, archive=os.path.join(ch, "cifar-100-binary.tar.gz"))
        r = self.train(base)
        self.assertOk(r)
        self.assertIn("preset from the `config` hyperparameter: quick-cpu", r.stdout)
        self.assertIn(f"data from channel 'training': archive {ch}/cifar-100-binary.tar.gz", r.stdout)
        cfg = read_json(os.path.join(base, "model", "config.json"))["training"]["config"]
        self.assertEqual((cfg["label_smoothing"], cfg["lr_reference_batch"], cfg["epochs"]), (0.1, 128, 1))

    def test_toolkit_variables(self):
        base = self.layout()
        elsewhere = os.path.join(self.tmp, "elsewhere")
        r = self.train(base, env={"SM_MODEL_DIR": elsewhere + "/model", "SM_OUTPUT_DATA_DIR": elsewhere + "/data",
                                  "SM_HPS": json.dumps({"epochs": 1})})
        self.assertOk(r)
        self.assertTrue(os.path.exists(os.path.join(elsewhere, "model", "model.safetensors")))
        self.assertTrue(os.path.exists(os.path.join(elsewhere, "data", "results.json")))

    def test_hyperparameters_command_round_trips_through_a_job(self):
        r = run(["sagemaker", "hyperparameters", "--config", "quick-cpu", "--set", "depth=10", "--set", "width=1",
                 "--set", "epochs=1", "--set", "val_size=200", "--set", "batch_size=32",
                 "--set", f"data_dir={self.tmp}/local", "--compact"])
        self.assertOk(r)
        hps = json.loads(r.stdout)
        self.assertTrue(all(isinstance(v, str) for v in hps.values()))
        self.assertEqual((hps["depth"], hps["epochs"], hps["lr_reference_batch"]), ("10", "1", "128"))
        self.assertNotIn("data_dir", hps)  # a local path means nothing inside the job
        self.assertIn("leaving out data_dir", r.stderr)
        base = self.layout(hps=hps)
        self.assertOk(self.train(base))
        cfg = read_json(os.path.join(base, "model", "config.json"))["training"]["config"]
        for k, v in hps.items():  # the job resolved every hyperparameter to the value it names
            got = cfg[k]
            if isinstance(got, bool):
                self.assertEqual(str(got).lower(), v, k)
            elif isinstance(got, (int, float)):
                self.assertEqual(float(got), float(v), k)
            else:
                self.assertEqual(got, v, k)
        r = run(["sagemaker", "hyperparameters", "--set", "epoch=3"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("did you mean 'epochs'", r.stderr)

    def test_sagemaker_off_ignores_the_layout(self):
        base = self.layout(hps={"epoch": "1"})
        r = self.train(base, "--sagemaker", "off", "--data-dir", self.fake_data(name="d", train=600, test=100),
                       "--out", os.path.join(self.tmp, "local"), "--set", "depth=10", "--set", "width=1",
                       "--set", "epochs=1", "--set", "val_size=100", "--set", "warmup_epochs=0")
        self.assertOk(r)
        self.assertNotIn("SageMaker training layout", r.stdout)
        r = self.train(os.path.join(self.tmp, "nothing"), "--sagemaker", "on")
        self.assertEqual(r.returncode, 2)
        self.assertIn("SAGEMAKER_BASE_DIR", r.stderr)


class Failures(Layout):
    def check(self, base, rc, *needles, env=None):
        r = self.train(base, env=env)
        self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
        text = self.failure(base)
        self.assertLessEqual(len(text.encode()), 1024)
        self.assertNotIn("\n", text)
        for n in needles:
            self.assertIn(n, text)
            self.assertIn(n, r.stderr)
        return text

    def test_unknown_hyperparameter(self):
        self.check(self.layout(hps=dict(HPS, learning_rate="0.1")), 2, "unknown config key 'learning_rate'",
                   "hyperparameter 'learning_rate'")
        self.check(self.relayout(hps={"epoch": "3"}), 2, "did you mean 'epochs'?")

    def relayout(self, **kw):
        import shutil
        shutil.rmtree(os.path.join(self.tmp, "opt-ml"))
        return self.layout(**kw)

    def test_value_out_of_range(self):
        self.check(self.layout(hps=dict(HPS, dropout="1.5")), 2, "invalid value '1.5' for 'dropout'", "[0, 1)")

    def test_missing_channel(self):
        self.check(self.layout(channels=("train",)), 1, "channel 'train' is given without a 'test' channel")
        base = self.relayout(idc={"train": {}, "test": {}}, channels=("train",))
        self.check(base, 1, "channel 'test' is declared", "does not exist")

    def test_pipe_mode(self):
        self.check(self.layout(idc={"train": {"TrainingInputMode": "Pipe"}, "test": {}}), 1,
                   "channel 'train' uses Pipe input mode")

    def test_corrupt_channel_file(self):
        base = self.layout()
        path = os.path.join(base, "input", "data", "train", "train.bin")
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        with open(path, "wb") as f:
            f.write(data[:100000])
        self.check(base, 1, path, "not a whole number of 3,074-byte records")

    def test_stale_failure_is_removed_by_a_good_run(self):
        base = self.layout(hps=dict(HPS, epochs="1"))
        os.makedirs(os.path.join(base, "output"))
        with open(os.path.join(base, "output", "failure"), "w") as f:
            f.write("old")
        self.assertOk(self.train(base))
        self.assertFalse(os.path.exists(os.path.join(base, "output", "failure")))

    def test_crash_writes_a_reason(self):
        base = self.layout(hps=dict(HPS, epochs="50"))
        env = dict(os.environ, SAGEMAKER_BASE_DIR=base, XDG_CACHE_HOME=os.path.join(self.tmp, "cache"))
        p = subprocess.Popen([BIN, "train"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            if "progress: epoch 1/50" in line:
                break
        p.send_signal(signal.SIGSEGV)
        p.stdout.read()
        self.assertEqual(p.wait(60), -signal.SIGSEGV)
        self.assertIn("cifar100 crashed with SIGSEGV", self.failure(base))


class Serving(TempDirTest):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.shared = tempfile.mkdtemp(prefix="cifar100-smserve-")
        subprocess.run([DUMP, "model", "10", "1", cls.shared], check=True, capture_output=True)
        cls.model = os.path.join(cls.shared, "model")

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(cls.shared, ignore_errors=True)

    def serve(self, *extra, env=None, model=None):
        s = Server(model or self.model, *extra, env=env)
        self.addCleanup(s.stop)
        s.wait_ready()
        return s

    def test_batch_transform_variables_reach_execution_parameters(self):
        s = self.serve(env={"SAGEMAKER_BATCH": "true", "SAGEMAKER_BATCH_STRATEGY": "SingleRecord",
                            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "8",
                            "SAGEMAKER_SAFE_PORT_RANGE": "20000-20999"})
        st, _, body = s.request("GET", "/execution-parameters")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD",
                                            "MaxPayloadInMB": 1})
        big = npy_bytes(np.zeros((120, 32, 32, 3), np.uint8))  # 368 KB: fine
        self.assertEqual(s.request("POST", "/invocations", big, {"Content-Type": "application/x-npy"})[0], 200)
        too_big = npy_bytes(np.zeros((400, 32, 32, 3), np.uint8))  # 1.2 MB > 1 MiB
        self.assertEqual(s.request("POST", "/invocations", too_big, {"Content-Type": "application/x-npy"})[0], 413)
        self.assertIn("timeout 600 s", "".join(s.lines))  # Batch Transform waits up to 600 s
        self.assertIn("SAGEMAKER_SAFE_PORT_RANGE 20000-20999", "".join(s.lines))

    def test_workers_answer_concurrent_requests_correctly(self):
        # Both in float32: one worker computes with 2 threads, each of two workers with 1, and in bf16 the top 5
        # holds exact ties (8-bit logits) whose order a last-bit difference between kernels would swap.
        one = self.serve("--precision", "fp32")
        two = self.serve("--precision", "fp32", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
        self.assertIn("2 inference workers", "".join(two.lines))
        rng = np.random.default_rng(1)
        imgs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(24)]
        want = [json.loads(one.request("POST", "/invocations", png_bytes(a), {"Content-Type": "image/png"})[2])
                for a in imgs]
        got = [None] * len(imgs)

        def client(i):
            got[i] = json.loads(two.request("POST", "/invocations", png_bytes(imgs[i]),
                                            {"Content-Type": "image/png"})[2])
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(imgs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w, g in zip(want, got):
            self.assertEqual([c["class"] for c in w["predictions"][0]["top_k"]],
                             [c["class"] for c in g["predictions"][0]["top_k"]])
            for a, b in zip(w["predictions"][0]["top_k"], g["predictions"][0]["top_k"]):
                self.assertAlmostEqual(a["probability"], b["probability"], places=4)

    def test_timeout_answers_504(self):
        # WRN-16-8 on 256 images takes seconds on two cores, far beyond a 1 s timeout.
        big = os.path.join(self.tmp, "big")
        subprocess.run([DUMP, "model", "16", "8", big], check=True, capture_output=True)
        s = self.serve("--max-batch", "256", env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"},
                       model=os.path.join(big, "model"))
        t0 = time.time()
        st, _, body = s.request("POST", "/invocations", npy_bytes(np.zeros((256, 32, 32, 3), np.uint8)),
                                {"Content-Type": "application/x-npy"})
        self.assertEqual(st, 504, body)
        self.assertEqual(json.loads(body)["error"]["code"], "timeout")
        self.assertLess(time.time() - t0, 1.9)
        # The server stays healthy: once the long pass is over, small requests are answered again.
        deadline, st = time.time() + 120, 0
        while time.time() < deadline and st != 200:
            st, _, _ = s.request("POST", "/invocations", png_bytes(np.zeros((32, 32, 3), np.uint8)),
                                 {"Content-Type": "image/png"})
            self.assertIn(st, (200, 504))
        self.assertEqual(st, 200)

    def test_connections_are_accepted_within_250_ms_of_start(self):
        # The launcher listens before LibTorch loads (about half a second here); the engine adopts the socket.
        from test_serve import free_port
        import socket
        port = free_port()
        t0 = time.time()
        p = subprocess.Popen([BIN, "serve", "--model", self.model, "--port", str(port), "--host", "127.0.0.1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(p.kill)
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                self.assertLess(time.time() - t0, 10)
                time.sleep(0.002)
        accepted = time.time() - t0
        self.assertLess(accepted, 0.25)
        # That early connection is served by the engine once it runs: /ping answers on it.
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/ping")
        self.assertIn(c.getresponse().status, (200, 503))
        c.close()
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=30)[0]
        self.assertEqual(p.returncode, 0, out)
        print(f"connection accepted {accepted * 1000:.1f} ms after start", file=sys.stderr)

    def test_bad_variable_is_a_usage_error(self):
        env = dict(os.environ, SAGEMAKER_BATCH="maybe")
        r = subprocess.run([BIN, "serve", "--model", self.model], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("SAGEMAKER_BATCH='maybe': expected true or false", r.stderr)

    def test_model_dir_defaults_to_the_layout(self):
        base = os.path.join(self.tmp, "opt-ml")
        os.makedirs(base)
        os.symlink(self.model, os.path.join(base, "model"))
        s = Server(None, env={"SAGEMAKER_BASE_DIR": base})
        self.addCleanup(s.stop)
        s.wait_ready()
        self.assertIn(f"model {base}/model", "".join(s.lines))

if __name__ == "__main__":
    unittest.main(verbosity=2)
