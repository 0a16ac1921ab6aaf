"""A small, strict NumPy evaluator of ONNX graphs, written from the operator specifications (opset 13) for the
few operators that `cifar100 export --onnx` emits: Cast, Mul, Add, Conv, Relu, GlobalAveragePool, Flatten, Gemm
(and BatchNormalization in inference mode, only when asked for: the self-check of this evaluator against
graphs that PyTorch exports). It is deliberately narrow: any other operator, any attribute it does not
implement (or a value of one it does not support, such as groups or dilations other than 1, or auto_pad other
than NOTSET), a non-default domain, a tensor of an unexpected type, an input used before it is produced, or a
fed array whose type or static shape does not match the graph's declaration raises EvalError. Computes in
float32, as the graph's types say."""
import numpy as np
import onnx
from onnx import numpy_helper

OPSET = 13
DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.INT64: np.int64}


class EvalError(Exception):
    pass


def _attrs(node, allowed):
    """The node's attributes as {name: value}; fails on any attribute not in `allowed`."""
    out = {}
    for a in node.attribute:
        if a.name not in allowed:
            raise EvalError(f"{node.op_type} node {node.name!r}: unsupported attribute {a.name!r}")
        out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def _float(node, *xs):
    for x in xs:
        if x.dtype != np.float32:
            raise EvalError(f"{node.op_type} node {node.name!r}: input of type {x.dtype}, expected float32")


def _cast(node, x):
    a = _attrs(node, {"to"})
    if "to" not in a:
        raise EvalError(f"Cast node {node.name!r} without 'to'")
    if a["to"] not in DTYPES:
        raise EvalError(f"Cast node {node.name!r}: unsupported target type {a['to']}")
    return x.astype(DTYPES[a["to"]])


def _binary(fn):
    def op(node, a, b):
        _attrs(node, set())
        _float(node, a, b)
        return fn(a, b).astype(np.float32)  # multidirectional (NumPy) broadcasting
    return op


def _relu(node, x):
    _attrs(node, set())
    _float(node, x)
    return np.maximum(x, np.float32(0))


def _conv(node, x, w, b=None):
    a = _attrs(node, {"kernel_shape", "pads", "strides", "dilations", "group", "auto_pad"})
    _float(node, x, w, *([] if b is None else [b]))
    if x.ndim != 4 or w.ndim != 4:
        raise EvalError(f"Conv node {node.name!r}: only 2-D convolutions (input {x.shape}, weight {w.shape})")
    n, c, h, wd = x.shape
    m, cw, kh, kw = w.shape
    if a.get("group", 1) != 1:
        raise EvalError(f"Conv node {node.name!r}: group {a['group']} (only 1 is supported)")
    if any(d != 1 for d in a.get("dilations", [1, 1])) or len(a.get("dilations", [1, 1])) != 2:
        raise EvalError(f"Conv node {node.name!r}: dilations {a['dilations']} (only 1 is supported)")
    auto_pad = a.get("auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET"):
        raise EvalError(f"Conv node {node.name!r}: auto_pad {auto_pad!r} (only NOTSET is supported)")
    if cw != c:
        raise EvalError(f"Conv node {node.name!r}: weight {w.shape} for an input of {c} channels")
    if "kernel_shape" in a and list(a["kernel_shape"]) != [kh, kw]:
        raise EvalError(f"Conv node {node.name!r}: kernel_shape {a['kernel_shape']} but weight {w.shape}")
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])  # [x1_begin, x2_begin, x1_end, x2_end]
    if len(a.get("pads", [0] * 4)) != 4 or min(pt, pl, pb, pr) < 0:
        raise EvalError(f"Conv node {node.name!r}: pads {a['pads']}")
    sh, sw = a.get("strides", [1, 1])
    if len(a.get("strides", [1, 1])) != 2 or sh < 1 or sw < 1:
        raise EvalError(f"Conv node {node.name!r}: strides {a['strides']}")
    if b is not None and b.shape != (m,):
        raise EvalError(f"Conv node {node.name!r}: bias {b.shape} for {m} output channels")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (h + pt + pb - kh) // sh + 1
    wo = (wd + pl + pr - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise EvalError(f"Conv node {node.name!r}: empty output for input {x.shape}")
    out = np.zeros((n, ho, wo, m), np.float32)
    for i in range(kh):  # one matrix product per kernel offset, accumulated
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]  # n, c, ho, wo
            out += np.tensordot(patch, w[:, :, i, j], axes=([1], [1]))  # -> n, ho, wo, m
    out = out.transpose(0, 3, 1, 2)
    if b is not None:
        out = out + b.reshape(1, m, 1, 1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _global_average_pool(node, x):
    _attrs(node, set())
    _float(node, x)
    if x.ndim < 3:
        raise EvalError(f"GlobalAveragePool node {node.name!r}: input of rank {x.ndim}")
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)


def _flatten(node, x):
    axis = _attrs(node, {"axis"}).get("axis", 1)
    if axis < 0:
        axis += x.ndim
    if not 0 <= axis <= x.ndim:
        raise EvalError(f"Flatten node {node.name!r}: axis {axis} for rank {x.ndim}")
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def _gemm(node, a_, b_, c=None):
    a = _attrs(node, {"alpha", "beta", "transA", "transB"})
    _float(node, a_, b_, *([] if c is None else [c]))
    if a_.ndim != 2 or b_.ndim != 2:
        raise EvalError(f"Gemm node {node.name!r}: inputs of shapes {a_.shape}, {b_.shape}")
    A = a_.T if a.get("transA", 0) else a_
    B = b_.T if a.get("transB", 0) else b_
    if A.shape[1] != B.shape[0]:
        raise EvalError(f"Gemm node {node.name!r}: {A.shape} x {B.shape}")
    y = np.float32(a.get("alpha", 1.0)) * (A @ B)
    if c is not None:
        y = y + np.float32(a.get("beta", 1.0)) * np.broadcast_to(c, y.shape)  # unidirectional broadcasting
    return y.astype(np.float32)


def _batch_norm(node, x, scale, bias, mean, var):
    a = _attrs(node, {"epsilon", "momentum", "training_mode"})
    _float(node, x, scale, bias, mean, var)
    if a.get("training_mode", 0):
        raise EvalError(f"BatchNormalization node {node.name!r}: training mode")
    if len(node.output) != 1:
        raise EvalError(f"BatchNormalization node {node.name!r}: {len(node.output)} outputs (inference has 1)")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    eps = np.float32(a.get("epsilon", 1e-5))
    inv = scale / np.sqrt(var + eps)
    return ((x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)).astype(np.float32)


OPS = {"Cast": (_cast, 1, 1), "Mul": (_binary(np.multiply), 2, 2), "Add": (_binary(np.add), 2, 2),
       "Conv": (_conv, 2, 3), "Relu": (_relu, 1, 1), "GlobalAveragePool": (_global_average_pool, 1, 1),
       "Flatten": (_flatten, 1, 1), "Gemm": (_gemm, 2, 3)}
BATCH_NORM = {"BatchNormalization": (_batch_norm, 5, 5)}


def _check_value(info, x, what):
    if not info.type.HasField("tensor_type"):
        raise EvalError(f"{what} {info.name!r} is not a tensor")
    t = info.type.tensor_type
    if DTYPES.get(t.elem_type) != x.dtype:
        raise EvalError(f"{what} {info.name!r}: array of {x.dtype}, declared element type {t.elem_type}")
    if t.HasField("shape"):
        dims = t.shape.dim
        if len(dims) != x.ndim:
            raise EvalError(f"{what} {info.name!r}: array of shape {x.shape}, declared rank {len(dims)}")
        for d, s in zip(dims, x.shape):
            if d.HasField("dim_value") and d.dim_value != s:
                raise EvalError(f"{what} {info.name!r}: array of shape {x.shape}, "
                                f"declared {onnx.helper.printable_type(info.type)}")


def run(model, feeds, allow_batch_norm=False):
    """Evaluates `model` (a ModelProto) on `feeds` ({input name: array}); returns {output name: array}."""
    for imp in model.opset_import:
        if imp.domain not in ("", "ai.onnx"):
            raise EvalError(f"operator set of domain {imp.domain!r}")
        if imp.version != OPSET:
            raise EvalError(f"opset {imp.version}; this evaluator implements opset {OPSET}")
    ops = dict(OPS, **(BATCH_NORM if allow_batch_norm else {}))
    g = model.graph
    env = {}
    for init in g.initializer:
        if init.name in env:
            raise EvalError(f"initializer {init.name!r} given twice")
        env[init.name] = numpy_helper.to_array(init)
    inputs = [i for i in g.input if i.name not in env]
    if sorted(i.name for i in inputs) != sorted(feeds):
        raise EvalError(f"graph inputs {[i.name for i in inputs]}, fed {sorted(feeds)}")
    for info in inputs:
        x = np.asarray(feeds[info.name])
        _check_value(info, x, "input")
        env[info.name] = x
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            raise EvalError(f"node {node.name!r} of domain {node.domain!r}")
        if node.op_type not in ops:
            raise EvalError(f"unsupported operator {node.op_type} (node {node.name!r})")
        fn, lo, hi = ops[node.op_type]
        names = list(node.input)
        while names and names[-1] == "":  # trailing optional inputs left out
            names.pop()
        if not lo <= len(names) <= hi or "" in names:
            raise EvalError(f"{node.op_type} node {node.name!r}: inputs {list(node.input)}")
        missing = [n for n in names if n not in env]
        if missing:
            raise EvalError(f"{node.op_type} node {node.name!r} uses {missing} before it is produced")
        if len(node.output) != 1 or not node.output[0]:
            raise EvalError(f"{node.op_type} node {node.name!r}: outputs {list(node.output)}")
        if node.output[0] in env:
            raise EvalError(f"{node.op_type} node {node.name!r}: output {node.output[0]!r} assigned twice")
        env[node.output[0]] = fn(node, *[env[n] for n in names])
    out = {}
    for info in g.output:
        if info.name not in env:
            raise EvalError(f"graph output {info.name!r} is never produced")
        _check_value(info, env[info.name], "output")
        out[info.name] = env[info.name]
    return out
