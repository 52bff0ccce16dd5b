#!/usr/bin/env python3
"""Writes ONNX test files of the paper's eight architectures, with their
expected outputs on a fixed input, for EdgeDI's ONNX importer tests.

    python3 tools/train/export_testnets.py --out out/onnx-testnets
    python3 tools/train/export_testnets.py --mini --out tests/data/onnx

Each model is built with fixed-seed random weights; its BN layers get
random scales and shifts and running statistics measured on random inputs
(so that folding BN at load is really tested, and the logits depend on the
input: see calibrate_bn), then it is exported in eval mode with
torch.onnx.export exactly as train.py exports (opset 13, "input" [1,3,H,W],
"logits" [1,6], constant folding). Inputs are small so the files stay
small, and odd-sized so floor rounding is exercised: VGG at 3x72x72
(72 -> 36 -> 18 -> 9 -> 4 -> 2: the classifier reads 512x2x2, so the
flatten order matters), ResNet at 3x104x104 (stem 51, then 26 13 7 4, head
avgpool 4 -> 2: the FC reads Cx2x2).

It writes, for each model NAME:
  NAME.onnx         the model
  NAME.logits.f32   the expected output, 1x6 little-endian float32, of the
                    torch model on the input of its size
  NAME.onnx_logits.f32  the same from the ONNX graph run with PyTorch's
                    operators (onnx_torch.py): what the file itself computes,
                    BN folded by the exporter; it differs from the torch
                    model by the "onnx-vs-torch" of MANIFEST.txt
and, once per input size:
  input_1x3xHxW.f32 the input, NCHW little-endian float32, uniform [0, 1)
                    with three different channels (fixed seed)
and MANIFEST.txt: per file its input shape, size, operators, the largest
|logit|, and that the ONNX graph run by onnx_torch matches torch.

--max-bytes (default 1 000 000) skips any model whose file would be larger
and says so: the paper's architectures are 4 MB (resnet18c) to 150 MB
(resnet50) whatever the input size, so none fits a 1 MB budget. --mini
writes instead the same eight graphs with every channel count and hidden
FC width divided by 8, or 16 or 32 where 8 is not enough to fit the budget
(the compact ratio halved where the paper's would leave fewer than two
channels in a unit): identical operator patterns (VGG unit ReLU -> BN, FE,
projection shortcuts, stem without padding, head), small enough to commit.
They are not the paper's models; the exact ones are for a local run.
"""
import argparse
import collections
import hashlib
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import export  # noqa: E402
import models  # noqa: E402
from onnx_torch import OnnxTorch  # noqa: E402

SIZE = {"vgg": 72, "resnet": 104}
MINI_WIDTH_DIVS = (8, 16, 32)
MINI_MIN_T = 2
CALIBRATION_BATCHES = 2
DEFAULT_MAX_BYTES = 1_000_000
SEED = 13


def calibrate_bn(model, size, gen, batches=CALIBRATION_BATCHES):
    """Random BN scales and shifts, and running statistics measured on
    random inputs like the test input. Without measured statistics a
    randomly initialized network in eval mode shrinks its signal layer by
    layer, and its logits hardly depend on the input (less than 0.2 %:
    a test on them would miss a broken convolution)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches
        model.train()
        for _ in range(batches):
            model(torch.rand(4, 3, size, size, generator=gen))
        model.eval()
        for m in bns:
            m.momentum = 0.1


def mini_ratio(name, width_div):
    """The compact ratio of a mini model: the paper's, unless it leaves
    fewer than MINI_MIN_T channels in the narrowest unit."""
    r = models.DEFAULT_RATIO[name]
    if not r:
        return None
    narrowest = (64 if name.startswith("vgg") or name == "resnet18c"
                 else 256) // width_div
    while r > 1 and narrowest // r < MINI_MIN_T:
        r //= 2
    return r


def build(name, width_div):
    size = SIZE["vgg" if name.startswith("vgg") else "resnet"]
    ratio = mini_ratio(name, width_div) if width_div > 1 else None
    torch.manual_seed(SEED)
    m = models.build(name, ratio, (size, size), 6, 3, width_div)
    gen = torch.Generator().manual_seed(SEED + 1)
    calibrate_bn(m, size, gen)
    if ratio is None:
        ratio = models.DEFAULT_RATIO[name]
    return m.eval(), size, ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/onnx-testnets")
    ap.add_argument("--mini", action="store_true",
                    help="channel widths / 8 (or 16, 32) (pattern files)")
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                    help="skip files larger than this (0: no limit)")
    ap.add_argument("--models", nargs="*", default=list(models.NAMES))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    divs = MINI_WIDTH_DIVS if a.mini else (1,)
    lines, skipped = [], []
    for name in a.models:
        fname = f"{name}_mini" if a.mini else name
        tmp = os.path.join(a.out, fname + ".onnx.tmp")
        for width_div in divs:
            m, size, ratio = build(name, width_div)
            gen = torch.Generator().manual_seed(SEED + 2)
            x = torch.rand(1, 3, size, size, generator=gen)
            with torch.no_grad():
                y = m(x)
            data = export.export_onnx(
                m, tmp, (size, size),
                {"model": name, "test": "export_testnets.py",
                 "width_div": width_div, "ratio": ratio or 0})
            if not a.max_bytes or len(data) <= a.max_bytes:
                break
            os.remove(tmp)
            print(f"{fname} (width / {width_div}): {len(data)} bytes > "
                  f"{a.max_bytes}")
        else:
            skipped.append(f"{fname} ({len(data) / 1e6:.1f} MB)")
            print(f"{fname}: skipped")
            continue
        diff = export.verify(m, data, [x])
        os.replace(tmp, os.path.join(a.out, fname + ".onnx"))
        in_name = f"input_1x3x{size}x{size}.f32"
        x.numpy().astype("<f4").tofile(os.path.join(a.out, in_name))
        y.numpy().astype("<f4").tofile(
            os.path.join(a.out, fname + ".logits.f32"))
        OnnxTorch(data)(x).numpy().astype("<f4").tofile(
            os.path.join(a.out, fname + ".onnx_logits.f32"))
        ops = collections.Counter(
            n.op_type for n in onnx.load_from_string(data).graph.node)
        ops_s = " ".join(f"{k}:{v}" for k, v in sorted(ops.items()))
        params = models.count_params(m)
        line = (f"{fname}.onnx  input {in_name}  "
                f"width/{width_div}  ratio {ratio}  params {params}  "
                f"bytes {len(data)}  "
                f"sha256 {hashlib.sha256(data).hexdigest()[:16]}  "
                f"max|logit| {float(y.abs().max()):.4f}  "
                f"onnx-vs-torch {diff:.1e}\n    ops {ops_s}")
        print(line, flush=True)
        lines.append(line)
    with open(os.path.join(a.out, "MANIFEST.txt"), "w") as f:
        f.write("Written by tools/train/export_testnets.py"
                f"{' --mini' if a.mini else ''} (torch {torch.__version__}, "
                f"opset {export.OPSET}, seed {SEED}). NAME.logits.f32 (1x6 "
                "float32 LE) is the torch model's output on the input file "
                "named on NAME's line (1x3xHxW NCHW float32 LE); "
                "NAME.onnx_logits.f32 the ONNX graph's, run with PyTorch's "
                "operators. onnx-vs-torch: their largest difference over "
                "the largest |logit|.\n")
        if a.mini:
            f.write("Mini: channel counts and hidden FC widths divided by "
                    "width/N; NOT the paper's models, the same operator "
                    "patterns.\n")
        f.write("\n" + "\n".join(lines) + "\n")
        if skipped:
            f.write("\nSkipped (over the size budget): " + ", ".join(skipped)
                    + "\n")
    if skipped:
        print("skipped: " + ", ".join(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
