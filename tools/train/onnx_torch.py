"""Runs an ONNX file with PyTorch's operators, node by node.

Debian has no ONNX Runtime, and ONNX 1.12 has no reference evaluator, so this
is the "other runtime" the tools check ONNX files with: what
torch.onnx.export wrote (does the file compute what the torch model does?)
and what EdgeDI's exporter writes (does EdgeDI's ONNX compute what EdgeDI
does?). It covers the operators EdgeDI's importer accepts
(runtime/onnx_import.h), with the ONNX semantics of opsets 9 to 18, float32,
in eval mode; anything else raises NotImplementedError naming the node.

    g = OnnxTorch(onnx.load(path)); logits = g(x)   # x: float32 NCHW tensor
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads_2d(pads):
    """ONNX [top, left, bottom, right] -> F.pad's (left, right, top,
    bottom)."""
    t, l, b, r = pads
    return (l, r, t, b)


class OnnxTorch:
    def __init__(self, model):
        if isinstance(model, str):
            model = onnx.load(model)
        elif isinstance(model, (bytes, bytearray)):
            model = onnx.load_from_string(bytes(model))
        self.model = model
        g = model.graph
        self.opset = max((o.version for o in model.opset_import
                          if o.domain in ("", "ai.onnx")), default=13)
        self.consts = {
            i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
            for i in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        self.nodes = list(g.node)

    def __call__(self, *xs):
        env = dict(self.consts)
        for name, x in zip(self.inputs, xs):
            env[name] = x
        with torch.no_grad():
            for node in self.nodes:
                outs = self._run(node, [env[i] if i else None
                                        for i in node.input], _attrs(node))
                if not isinstance(outs, (list, tuple)):
                    outs = [outs]
                for name, v in zip(node.output, outs):
                    env[name] = v
        res = [env[o] for o in self.outputs]
        return res[0] if len(res) == 1 else res

    def _run(self, node, x, a):
        op = node.op_type
        if op == "Conv":
            k = a.get("kernel_shape", list(x[1].shape[2:]))
            strides = a.get("strides", [1, 1])
            dil = a.get("dilations", [1, 1])
            auto = a.get("auto_pad", b"NOTSET")
            auto = auto.decode() if isinstance(auto, bytes) else auto
            pads = a.get("pads", [0, 0, 0, 0])
            inp = x[0]
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                pads = [0, 0, 0, 0]
                for d in range(2):
                    n = inp.shape[2 + d]
                    out = -(-n // strides[d])
                    tot = max(0, (out - 1) * strides[d] +
                              (k[d] - 1) * dil[d] + 1 - n)
                    lo = tot // 2 if auto == "SAME_UPPER" else tot - tot // 2
                    pads[d], pads[d + 2] = lo, tot - lo
            if any(pads):
                inp = F.pad(inp, _pads_2d(pads))
            return F.conv2d(inp, x[1], x[2] if len(x) > 2 else None,
                            strides, 0, dil, a.get("group", 1))
        if op == "BatchNormalization":
            return F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0,
                                a.get("epsilon", 1e-5))
        if op == "Relu":
            return F.relu(x[0])
        if op == "Sigmoid":
            return torch.sigmoid(x[0])
        if op in ("MaxPool", "AveragePool"):
            k = a["kernel_shape"]
            strides = a.get("strides", [1, 1])
            pads = a.get("pads", [0, 0, 0, 0])
            ceil = bool(a.get("ceil_mode", 0))
            if pads[0] != pads[2] or pads[1] != pads[3]:
                raise NotImplementedError(f"{node.name}: asymmetric pads")
            if op == "MaxPool":
                return F.max_pool2d(x[0], k, strides, pads[:2], 1, ceil)
            return F.avg_pool2d(x[0], k, strides, pads[:2], ceil,
                                bool(a.get("count_include_pad", 0)))
        if op == "GlobalAveragePool":
            return x[0].mean(dim=(2, 3), keepdim=True)
        if op == "ReduceMean":
            axes = a.get("axes")
            if axes is None and len(x) > 1 and x[1] is not None:
                axes = x[1].tolist()
            axes = tuple(axes) if axes is not None else \
                tuple(range(x[0].dim()))
            return x[0].mean(dim=axes, keepdim=bool(a.get("keepdims", 1)))
        if op == "Gemm":
            A, B = x[0], x[1]
            if a.get("transA", 0):
                A = A.t()
            if a.get("transB", 0):
                B = B.t()
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            return y
        if op == "MatMul":
            return x[0] @ x[1]
        if op == "Add":
            return x[0] + x[1]
        if op == "Mul":
            return x[0] * x[1]
        if op == "Flatten":
            ax = a.get("axis", 1)
            s = x[0].shape
            lead = int(np.prod(s[:ax])) if ax else 1
            return x[0].reshape(lead, -1)
        if op == "Reshape":
            shape = [int(v) for v in x[1].tolist()]
            if not a.get("allowzero", 0):
                shape = [x[0].shape[i] if v == 0 else v
                         for i, v in enumerate(shape)]
            return x[0].reshape(shape)
        if op == "Squeeze":
            axes = a.get("axes")
            if axes is None and len(x) > 1 and x[1] is not None:
                axes = x[1].tolist()
            if axes is None:
                return x[0].squeeze()
            y = x[0]
            for ax in sorted((v % y.dim() for v in axes), reverse=True):
                y = y.squeeze(ax)
            return y
        if op == "Unsqueeze":
            axes = a.get("axes")
            if axes is None:
                axes = x[1].tolist()
            y = x[0]
            rank = y.dim() + len(axes)
            for ax in sorted(v % rank for v in axes):
                y = y.unsqueeze(ax)
            return y
        if op == "Pad":
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode != "constant":
                raise NotImplementedError(f"{node.name}: Pad mode {mode}")
            pads = a.get("pads")
            if pads is None:
                pads = x[1].tolist()
            value = 0.0
            if "value" in a:
                value = a["value"]
            elif len(x) > 2 and x[2] is not None:
                value = float(x[2].reshape(-1)[0])
            r = x[0].dim()
            tp = []
            for d in reversed(range(r)):
                tp += [pads[d], pads[d + r]]
            return F.pad(x[0], tp, value=value)
        if op in ("Identity", "Dropout"):
            return x[0]
        if op == "Constant":
            if "value" in a:
                return torch.from_numpy(numpy_helper.to_array(a["value"])
                                        .copy())
            for key in ("value_float", "value_int"):
                if key in a:
                    return torch.tensor(a[key])
            for key in ("value_floats", "value_ints"):
                if key in a:
                    return torch.tensor(list(a[key]))
            raise NotImplementedError(f"{node.name}: Constant form")
        if op == "Shape":
            return torch.tensor(list(x[0].shape), dtype=torch.int64)
        if op == "Gather":
            ax = a.get("axis", 0)
            idx = x[1]
            if idx.dim() == 0:
                return x[0].select(ax, int(idx) % x[0].shape[ax])
            return torch.index_select(x[0], ax, idx.reshape(-1).long()
                                      ).reshape(x[0].shape[:ax] + idx.shape +
                                                x[0].shape[ax + 1:])
        if op == "Concat":
            return torch.cat([v.reshape(-1) if v.dim() == 0 else v
                              for v in x], dim=a["axis"])
        raise NotImplementedError(f"node {node.name!r}: operator {op}")


def run_onnx(path_or_model, x):
    return OnnxTorch(path_or_model)(x)
