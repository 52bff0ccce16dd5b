"""ONNX export of a torch model the way EdgeDI expects it, and its check.

torch.onnx.export, opset 13, eval mode (BN uses its running statistics),
constant folding on, batch fixed at 1: input "input" [1, 3, H, W] float32,
output "logits" [1, classes]. The file is then checked with onnx.checker and
run with onnx_torch (PyTorch's operators over the ONNX graph) to prove it
computes what the torch model computes.
"""
import io

import onnx
import torch

from onnx_torch import OnnxTorch

OPSET = 13


def export_onnx(model, path, in_hw, metadata=None, in_ch=3):
    """Writes `model` to `path`; returns the file's bytes. metadata: {key:
    value} stored as the ONNX file's metadata_props (strings)."""
    model.eval()
    x = torch.zeros(1, in_ch, in_hw[0], in_hw[1])
    f = io.BytesIO()
    torch.onnx.export(model, x, f, opset_version=OPSET,
                      input_names=["input"], output_names=["logits"],
                      do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    m = onnx.load_from_string(f.getvalue())
    m.producer_name = "edgedi tools/train (torch.onnx.export)"
    for k, v in (metadata or {}).items():
        p = m.metadata_props.add()
        p.key, p.value = str(k), str(v)
    onnx.checker.check_model(m)
    data = m.SerializeToString()
    with open(path, "wb") as out:
        out.write(data)
    return data


def max_rel_diff(a, b):
    """max |a - b| / max |a|: the difference relative to the largest logit,
    as EdgeDI's exactness contract (DESIGN.md) states it."""
    scale = max(float(a.abs().max()), 1e-12)
    return float((a - b).abs().max()) / scale


def verify(model, onnx_bytes, xs, tol=1e-4):
    """Runs the torch model and the ONNX graph (through onnx_torch) on each
    input in xs ([1,C,H,W] tensors); returns the largest difference relative
    to the largest logit, raising if it exceeds tol."""
    model.eval()
    g = OnnxTorch(onnx_bytes)
    worst = 0.0
    with torch.no_grad():
        for x in xs:
            worst = max(worst, max_rel_diff(model(x), g(x)))
    if worst > tol:
        raise AssertionError(f"ONNX differs from torch: {worst:.3g} > {tol}")
    return worst
