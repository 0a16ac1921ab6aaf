"""`cifar100 export --onnx FILE`: the ONNX model of a trained artifact (--model) or of a checkpoint
(--checkpoint, optionally with --out), with float (normalised) or uint8 (raw pixel) input. The file passes
onnx.checker's full check and shape inference (logits [batch, num_classes], batch dynamic); its graph holds
only the documented operators with every batch norm folded (no BatchNormalization; one Conv per conv layer
of the state dict); a NumPy evaluator of the graph written here (onnx_numpy.py, checked itself against
PyTorch's own ONNX export) gives the logits of the PyTorch reference model (tools/reference/wrn.py) loaded with
the artifact's weights, for batches of 5 and 2; the metadata describe the artifact as its config.json does;
bad arguments and files fail with the right exit status and leave no ONNX file behind."""
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
try:
    import onnx
    import onnx.checker
    import onnx.shape_inference
    from onnx import numpy_helper
except ImportError as e:  # a failure, not a skip: the export is checked with the onnx package
    sys.exit(f"test_onnx.py needs the onnx Python package (Debian: apt-get install python3-onnx): {e}")
import torch  # noqa: E402

import onnx_numpy  # noqa: E402
import safetensors_spec  # noqa: E402
from harness import BIN, TempDirTest, read_json, run  # noqa: E402
from wrn import WideResNet  # noqa: E402

TOL = 1e-4  # max |logit difference| relative to max(1, max |logit|): fp32 with a different summation order
OPS = {"Cast", "Mul", "Add", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"}  # all the contract allows
DEPTH, WIDTH = 10, 2  # width 2: every group's first block has a projection shortcut
QUICK = ["--set", f"depth={DEPTH}", "--set", f"width={WIDTH}", "--set", "batch_size=32", "--set", "lr=0.1",
         "--set", "lr_reference_batch=32", "--set", "warmup_epochs=0", "--set", "val_size=100",
         "--set", "train_limit=480", "--set", "eval_batch_size=128", "--set", "log_interval=0",
         "--set", "threads=2", "--set", "epochs=1", "--set", "mixup_alpha=0", "--set", "dropout=0"]


def reference_model(artifact_dir):
    """The PyTorch reference model with the artifact's model.safetensors (strict names and shapes), eval mode."""
    cfg = read_json(os.path.join(artifact_dir, "config.json"))
    tensors, _ = safetensors_spec.read(os.path.join(artifact_dir, "model.safetensors"))
    ref = WideResNet(cfg["depth"], cfg["width"], 0.0, cfg["num_classes"])
    ref.load_state_dict(tensors, strict=True)
    return ref.eval(), cfg, tensors


def normalise(pixels, mean, std):
    """uint8 NCHW pixels -> (pixel/255 - mean) / std per channel, float32 (as test_artifact.py does it)."""
    x = torch.from_numpy(pixels).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def max_rel_diff(got, want):
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))


def run_with_file_size_limit(args, limit):
    """run() with RLIMIT_FSIZE: a write past `limit` bytes fails with EFBIG (SIGXFSZ ignored) instead of
    killing the process, so the binary sees a write error part way through a file."""
    def child():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    e = dict(os.environ)
    for k in ("CIFAR100_ARCHIVE", "CIFAR100_DATA_DIR", "CIFAR100_DEVICE", "CIFAR100_THREADS", "CIFAR100_PRECISION"):
        e.pop(k, None)
    return subprocess.run([BIN] + args, env=e, capture_output=True, text=True, timeout=300, preexec_fn=child,
                          restore_signals=False)


class OnnxEvaluatorSelfCheck(unittest.TestCase):
    """onnx_numpy against PyTorch on graphs that PyTorch's own exporter writes: independent of cifar100."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        torch.set_num_threads(2)
        cls.ref = WideResNet(DEPTH, WIDTH, 0.0, 100)
        for m in cls.ref.modules():  # batch norms far from the identity, so that folding matters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.3, 0.3)
        cls.ref.eval()
        cls.mean, cls.std = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
        cls.pixels = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)

    @staticmethod
    def export(module, example):
        f = io.BytesIO()
        torch.onnx.export(module, example, f, input_names=["image"], output_names=["logits"], opset_version=13,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        model = onnx.load_from_string(f.getvalue())
        onnx.checker.check_model(model, full_check=True)
        return model

    def test_matches_pytorch_with_batch_normalization_nodes(self):
        model = self.export(self.ref, torch.zeros(1, 3, 32, 32))
        self.assertIn("BatchNormalization", {n.op_type for n in model.graph.node})
        with self.assertRaisesRegex(onnx_numpy.EvalError, "unsupported operator BatchNormalization"):
            onnx_numpy.run(model, {"image": np.zeros((1, 3, 32, 32), np.float32)})
        for n in (5, 2):
            x = normalise(self.pixels[:n], self.mean, self.std)
            with torch.no_grad():
                want = self.ref(x).numpy()
            got = onnx_numpy.run(model, {"image": x.numpy()}, allow_batch_norm=True)["logits"]
            self.assertEqual(got.shape, (n, 100))
            self.assertLessEqual(max_rel_diff(got, want), TOL)

    def test_matches_pytorch_on_a_folded_uint8_graph(self):
        """A graph of only the contract's operators: uint8 input cast and normalised with Mul+Add, batch norms
        folded into the preceding conv (Conv with bias) or into a per-channel Mul+Add."""
        folded = FoldedWRN(self.ref, self.mean, self.std)
        model = self.export(folded, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
        ops = {n.op_type for n in model.graph.node}
        self.assertEqual(ops, OPS)
        self.assertTrue(any(n.op_type == "Conv" and len(n.input) == 3 for n in model.graph.node))
        for n in (5, 2):
            with torch.no_grad():
                want = self.ref(normalise(self.pixels[:n], self.mean, self.std)).numpy()
                self.assertLessEqual(max_rel_diff(folded(torch.from_numpy(self.pixels[:n])).numpy(), want), TOL)
            got = onnx_numpy.run(model, {"image": self.pixels[:n]})["logits"]
            self.assertLessEqual(max_rel_diff(got, want), TOL)
        # A wrong input type or shape is refused, not converted.
        with self.assertRaisesRegex(onnx_numpy.EvalError, "float32"):
            onnx_numpy.run(model, {"image": self.pixels.astype(np.float32)})
        with self.assertRaisesRegex(onnx_numpy.EvalError, "shape"):
            onnx_numpy.run(model, {"image": self.pixels[:, :, :16]})

    def test_refuses_what_it_does_not_implement(self):
        h = onnx.helper
        w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")

        def conv_model(**attrs):
            node = h.make_node("Conv", ["x", "w"], ["y"], **attrs)
            g = h.make_graph([node], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])],
                             [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [w])
            return h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
        x = np.ones((1, 2, 4, 4), np.float32)
        # Plain conv: each output is the sum over a 2x3x3 window of ones (with zero padding at the border).
        y = onnx_numpy.run(conv_model(pads=[1, 1, 1, 1]), {"x": x})["y"]
        self.assertEqual(y[0, 0].tolist(), [[8, 12, 12, 8], [12, 18, 18, 12], [12, 18, 18, 12], [8, 12, 12, 8]])
        y = onnx_numpy.run(conv_model(pads=[0, 1, 1, 0], strides=[2, 1]), {"x": x})["y"]
        self.assertEqual(y.shape, (1, 2, 2, 3))  # pads [top, left, bottom, right]: rows 0-4 by 2, columns -1-3 by 1
        self.assertEqual(y[0, 1].tolist(), [[12, 18, 18], [8, 12, 12]])
        for attrs, msg in [({"group": 2}, "group"), ({"dilations": [2, 2]}, "dilations"),
                           ({"auto_pad": "SAME_UPPER"}, "auto_pad"), ({"foo": 1}, "unsupported attribute"),
                           ({"kernel_shape": [1, 1]}, "kernel_shape")]:
            with self.assertRaisesRegex(onnx_numpy.EvalError, msg):
                onnx_numpy.run(conv_model(**attrs), {"x": x})


class FoldedWRN(torch.nn.Module):
    """The reference model with its batch norms folded the way the contract describes, in PyTorch: the self-check's
    source of a graph made of the contract's operators only."""

    def __init__(self, ref, mean, std):
        super().__init__()
        mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.register_buffer("in_scale", 1.0 / (255.0 * std))
        self.register_buffer("in_shift", -mean / std)
        self.stem = ref.stem
        self.blocks = torch.nn.ModuleList()
        for g in (ref.layer1, ref.layer2, ref.layer3):
            for b in g:
                m = torch.nn.Module()
                m.s1, m.t1 = self.affine(b.bn1)
                m.conv1 = self.fold(b.conv1, b.bn2)
                m.conv2, m.shortcut = b.conv2, b.shortcut
                self.blocks.append(m)
        self.s, self.t = self.affine(ref.bn)
        self.fc = ref.fc

    @staticmethod
    def affine(bn):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() - bn.running_mean * scale
        return torch.nn.Parameter(scale.view(1, -1, 1, 1)), torch.nn.Parameter(shift.view(1, -1, 1, 1))

    @staticmethod
    def fold(conv, bn):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        c = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        c.weight.data = conv.weight.detach() * scale.view(-1, 1, 1, 1)
        c.bias.data = bn.bias.detach() - bn.running_mean * scale
        return c

    def forward(self, x):
        y = self.stem(x.float() * self.in_scale + self.in_shift)
        for b in self.blocks:
            o = torch.relu(y * b.s1 + b.t1)
            z = b.conv2(torch.relu(b.conv1(o)))
            y = z + (b.shortcut(o) if b.shortcut is not None else y)
        y = torch.relu(y * self.s + self.t)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


class OnnxExport(TempDirTest):
    @classmethod
    def setUpClass(cls):
        # One small training run (WRN-10-2, 15 steps) shared by every test (read-only for them), and the four
        # exports: from the artifact and from the run, float and uint8 input.
        cls.shared = tempfile.mkdtemp(prefix="cifar100-onnx-")
        t = TempDirTest()
        t.tmp = cls.shared
        cls.data = t.fake_data(train=600, test=200, classes=10)
        cls.out = os.path.join(cls.shared, "run")
        r = run(["train", "--data-dir", cls.data, "--out", cls.out] + QUICK)
        assert r.returncode == 0, r.stdout + r.stderr
        cls.artifact = os.path.join(cls.out, "model")
        cls.ckpt_artifact = os.path.join(cls.shared, "from-checkpoint")
        cls.exports = {}  # kind -> (ONNX file, artifact directory it must match, input dtype)
        cls.logs = {}
        jobs = {
            "model-float": (["--model", cls.artifact], cls.artifact, "float"),
            "model-uint8": (["--model", cls.artifact, "--onnx-input", "uint8"], cls.artifact, "uint8"),
            # --out next to --onnx: both come from the same checkpoint (the run's best).
            "checkpoint-float": (["--checkpoint", cls.out, "--out", cls.ckpt_artifact, "--data-dir", cls.data,
                                  "--onnx-input", "float"], cls.ckpt_artifact, "float"),
            # No --out: only the ONNX file is written.
            "checkpoint-uint8": (["--checkpoint", cls.out, "--onnx-input", "uint8", "--data-dir", cls.data],
                                 cls.ckpt_artifact, "uint8"),
        }
        for kind, (args, ref_dir, dtype) in jobs.items():
            d = os.path.join(cls.shared, "onnx-" + kind)
            os.makedirs(d)
            f = os.path.join(d, "model.onnx")
            r = run(["export"] + args + ["--onnx", f])
            cls.logs[kind] = r
            cls.exports[kind] = (f, ref_dir, dtype)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.shared, ignore_errors=True)

    def load(self, kind):
        """The ONNX model of one export (after checking that the command succeeded and wrote only FILE)."""
        f, ref_dir, dtype = self.exports[kind]
        self.assertOk(self.logs[kind])
        self.assertEqual(os.listdir(os.path.dirname(f)), ["model.onnx"], kind)
        return onnx.load(f), ref_dir, dtype

    def test_exports_write_the_onnx_file_and_the_artifact(self):
        for kind in self.exports:
            with self.subTest(kind):
                self.load(kind)
        # --out next to --onnx still writes the artifact (the reference of both checkpoint exports).
        self.assertEqual(sorted(os.listdir(self.ckpt_artifact)), ["config.json", "model.pt", "model.safetensors"])
        self.assertIn("checkpoint", read_json(os.path.join(self.ckpt_artifact, "config.json"))["training"]["source"])

    def test_model_passes_the_checker_and_shape_inference(self):
        for kind in self.exports:
            with self.subTest(kind):
                model, ref_dir, dtype = self.load(kind)
                num_classes = read_json(os.path.join(ref_dir, "config.json"))["num_classes"]
                onnx.checker.check_model(model, full_check=True)
                self.assertEqual(model.ir_version, 7)
                self.assertEqual([(o.domain, o.version) for o in model.opset_import], [("", 13)])
                self.assertEqual(model.producer_name, "cifar100")
                g = model.graph
                inits = {i.name for i in g.initializer}
                inputs = [i for i in g.input if i.name not in inits]
                self.assertEqual([i.name for i in inputs], ["image"])
                self.assertEqual([o.name for o in g.output], ["logits"])
                t = inputs[0].type.tensor_type
                self.assertEqual(t.elem_type, onnx.TensorProto.UINT8 if dtype == "uint8" else onnx.TensorProto.FLOAT)
                dims = t.shape.dim
                self.assertEqual(len(dims), 4)
                self.assertEqual(dims[0].WhichOneof("value"), "dim_param")
                self.assertEqual(dims[0].dim_param, "batch")
                self.assertEqual([(d.WhichOneof("value"), d.dim_value) for d in dims[1:]], [("dim_value", 3),
                                 ("dim_value", 32), ("dim_value", 32)])
                out = g.output[0].type.tensor_type
                self.assertEqual(out.elem_type, onnx.TensorProto.FLOAT)
                self.assertEqual([d.dim_param or d.dim_value for d in out.shape.dim], ["batch", num_classes])
                # Shape inference, strict, derives the same output from the input alone (declared output
                # type and any value_info removed first).
                bare = onnx.ModelProto()
                bare.CopyFrom(model)
                bare.graph.output[0].type.Clear()
                del bare.graph.value_info[:]
                inferred = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True,
                                                             data_prop=True)
                it = inferred.graph.output[0].type.tensor_type
                self.assertEqual(it.elem_type, onnx.TensorProto.FLOAT)
                self.assertEqual([d.WhichOneof("value") for d in it.shape.dim], ["dim_param", "dim_value"])
                self.assertEqual([d.dim_param or d.dim_value for d in it.shape.dim], ["batch", num_classes])
                onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # no conflict

    def test_graph_has_folded_batch_norms_and_plain_weights(self):
        for kind in self.exports:
            with self.subTest(kind):
                model, ref_dir, dtype = self.load(kind)
                _, cfg, tensors = reference_model(ref_dir)
                g = model.graph
                ops = [n.op_type for n in g.node]
                self.assertNotIn("BatchNormalization", ops)
                self.assertLessEqual(set(ops), OPS, set(ops) - OPS)
                self.assertTrue(all(n.domain == "" for n in g.node))
                convs = [k for k, v in tensors.items() if k.endswith(".weight") and v.dim() == 4]
                self.assertEqual(ops.count("Conv"), len(convs))
                n = (cfg["depth"] - 4) // 6  # stem, two per block, a shortcut in each group's first block but
                self.assertEqual(len(convs), 1 + 6 * n + 2 + (cfg["width"] > 1))  # layer1's at width 1
                inits = {i.name: i for i in g.initializer}
                self.assertEqual(len(inits), len(g.initializer), "initializer names are unique")
                for i in g.initializer:  # float32 weights as raw little-endian data
                    self.assertEqual(i.data_type, onnx.TensorProto.FLOAT, i.name)
                    self.assertEqual(len(i.raw_data), 4 * int(np.prod(i.dims)), i.name)
                    self.assertEqual(len(i.float_data), 0, i.name)
                used = {x for n in g.node for x in n.input}
                self.assertEqual(set(inits) - used, set(), "unused initializers")
                # Every batch norm right after a conv (bn2 after conv1 in each block) is folded into it: at
                # least that many Conv nodes have a bias; the others are per-channel Mul+Add constants.
                blocks = len([k for k in tensors if k.endswith(".bn2.weight")])
                with_bias = [n for n in g.node if n.op_type == "Conv" and len(n.input) == 3 and n.input[2]]
                self.assertGreaterEqual(len(with_bias), blocks)
                for n in g.node:
                    if n.op_type == "Conv":
                        names = {a.name for a in n.attribute}
                        self.assertLessEqual({"pads", "strides", "kernel_shape"}, names, n.name)
                        self.assertEqual(names - {"pads", "strides", "kernel_shape", "dilations", "group"}, set())
                    if n.op_type in ("Mul", "Add"):  # constants: per channel [1,C,1,1] (or a scalar)
                        for c in [numpy_helper.to_array(inits[x]) for x in n.input if x in inits]:
                            self.assertTrue(c.size == 1 or (c.ndim == 4 and c.shape[0] == 1 and c.shape[2:] == (1, 1)),
                                            (n.name, c.shape))
                # The classifier is the state dict's, unchanged: Gemm(x, fc.weight, fc.bias) with transB=1.
                gemm = [n for n in g.node if n.op_type == "Gemm"]
                self.assertEqual(len(gemm), 1)
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm[0].attribute}
                self.assertEqual(attrs.get("transB"), 1)
                self.assertEqual(attrs.get("transA", 0), 0)
                self.assertEqual(gemm[0].output[0], "logits")
                np.testing.assert_array_equal(numpy_helper.to_array(inits[gemm[0].input[1]]),
                                              tensors["fc.weight"].numpy())
                np.testing.assert_array_equal(numpy_helper.to_array(inits[gemm[0].input[2]]),
                                              tensors["fc.bias"].numpy())
                # uint8 input: the image goes through one Cast to float first.
                consumers = [n for n in g.node if "image" in n.input]
                if dtype == "uint8":
                    self.assertEqual([n.op_type for n in consumers], ["Cast"])
                    self.assertEqual(onnx.helper.get_attribute_value(consumers[0].attribute[0]),
                                     onnx.TensorProto.FLOAT)

    def test_logits_match_the_pytorch_reference(self):
        torch.set_num_threads(2)
        pixels = np.random.default_rng(7).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
        for kind in self.exports:
            with self.subTest(kind):
                model, ref_dir, dtype = self.load(kind)
                ref, cfg, _ = reference_model(ref_dir)
                x = normalise(pixels, cfg["mean"], cfg["std"])
                with torch.no_grad():
                    want = ref(x).numpy()
                # The comparison means something: the images get different logits.
                self.assertGreater(float(np.abs(want - want[0]).max()), 1e-3)
                feed = pixels if dtype == "uint8" else x.numpy()
                got5 = onnx_numpy.run(model, {"image": feed})["logits"]
                got2 = onnx_numpy.run(model, {"image": feed[3:]})["logits"]  # another batch size
                self.assertEqual(got5.shape, (5, cfg["num_classes"]))
                self.assertEqual(got2.shape, (2, cfg["num_classes"]))
                d5, d2 = max_rel_diff(got5, want), max_rel_diff(got2, want[3:])
                print(f"{kind}: max |logit diff| / max(1, max |logit|) vs PyTorch: batch 5 {d5:.2e}, "
                      f"batch 2 {d2:.2e} (tolerance {TOL:g}; logit scale {np.abs(want).max():.2f})")
                self.assertLessEqual(d5, TOL)
                self.assertLessEqual(d2, TOL)
                self.assertEqual(got5.argmax(1).tolist(), want.argmax(1).tolist())

    def test_metadata_describe_the_artifact(self):
        for kind in self.exports:
            with self.subTest(kind):
                model, ref_dir, dtype = self.load(kind)
                cfg = read_json(os.path.join(ref_dir, "config.json"))
                keys = [p.key for p in model.metadata_props]
                self.assertEqual(len(keys), len(set(keys)), "duplicate metadata keys")
                meta = {p.key: p.value for p in model.metadata_props}
                self.assertLessEqual({"architecture", "num_classes", "image_size", "mean", "std", "class_names",
                                      "input", "input_dtype"}, set(meta))
                self.assertEqual(meta["architecture"], cfg["model_name"])
                self.assertEqual(meta["architecture"], f"WRN-{DEPTH}-{WIDTH}")
                self.assertEqual(meta["num_classes"], str(cfg["num_classes"]))
                self.assertEqual(meta["image_size"], "32")
                self.assertEqual(meta["input_dtype"], dtype)
                self.assertTrue(meta["input"].strip())
                for key in ("mean", "std"):  # equal at float32 precision (the C++ keeps them as floats)
                    v = json.loads(meta[key])
                    self.assertEqual(len(v), 3)
                    self.assertEqual(np.float32(v).tolist(), np.float32(cfg[key]).tolist(), key)
                names = json.loads(meta["class_names"])
                self.assertEqual(names, cfg["class_names"])
                self.assertEqual(len(names), cfg["num_classes"])
                self.assertEqual(names[3], "class_3")  # the names of the data set it was trained on

    def test_errors_exit_with_the_right_status_and_leave_no_file(self):
        d = os.path.join(self.tmp, "out")
        os.makedirs(d)
        f = os.path.join(d, "model.onnx")

        def nothing_written():
            self.assertEqual(os.listdir(d), [], "no ONNX file (nor a temporary one) after a failure")

        r = run(["export", "--model", self.artifact, "--onnx", f, "--onnx-input", "bogus"])
        self.assertEqual(r.returncode, 2, r.stderr)
        nothing_written()
        # Usage: --checkpoint and --model together, neither, and no output at all.
        r = run(["export", "--model", self.artifact, "--checkpoint", self.out, "--onnx", f])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run(["export", "--onnx", f])
        self.assertEqual(r.returncode, 2, r.stderr)
        r = run(["export", "--checkpoint", self.out])
        self.assertEqual(r.returncode, 2, r.stderr)
        nothing_written()
        # --model at a directory that is not an artifact, or that does not exist.
        bad = os.path.join(self.tmp, "not-an-artifact")
        os.makedirs(bad)
        with open(os.path.join(bad, "keep.txt"), "w") as fh:
            fh.write("mine")
        for model_dir in (bad, os.path.join(self.tmp, "missing")):
            r = run(["export", "--model", model_dir, "--onnx", f])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(model_dir, r.stderr)
            nothing_written()
        # An artifact whose weights file is damaged.
        damaged = os.path.join(self.tmp, "damaged")
        shutil.copytree(self.artifact, damaged)
        st = os.path.join(damaged, "model.safetensors")
        with open(st, "r+b") as fh:
            fh.truncate(os.path.getsize(st) // 2)
        r = run(["export", "--model", damaged, "--onnx", f])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(damaged, r.stderr)
        nothing_written()
        # A file that cannot be created (its directory is a file): the message names it.
        blocker = os.path.join(self.tmp, "a-file")
        with open(blocker, "w") as fh:
            fh.write("not a directory")
        unwritable = os.path.join(blocker, "model.onnx")
        r = run(["export", "--model", self.artifact, "--onnx", unwritable])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(unwritable, r.stderr)
        with open(blocker) as fh:
            self.assertEqual(fh.read(), "not a directory")
        # A write that fails part way (the file size limit at a third of the model's size): exit 1, the file
        # named, and no partial file left.
        size = os.path.getsize(self.exports["model-float"][0])
        self.assertGreater(size, 300_000)
        r = run_with_file_size_limit(["export", "--model", self.artifact, "--onnx", f], size // 3)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f, r.stderr)
        nothing_written()
        # The same command without the limit succeeds (the failure above was the write's).
        r = run(["export", "--model", self.artifact, "--onnx", f])
        self.assertOk(r)
        self.assertEqual(os.listdir(d), ["model.onnx"])
        onnx.checker.check_model(f, full_check=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
