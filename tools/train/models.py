#!/usr/bin/env python3
"""The paper's eight architectures in PyTorch, exactly as the project's
MODELS.md (and EdgeDI's C zoo, runtime/zoo_vgg.c and runtime/zoo_resnet.c)
define them.

    vgg13  vgg13c (r=4)  vgg16  vgg16c (r=8)
    resnet18  resnet18c (r=8)  resnet50  resnet50c (r=32)

Rules that matter (they differ from torchvision):
  * no convolution has a bias; every 3x3 convolution has padding 1 except the
    ResNet stem (3x3, stride 2, padding 0: 200 -> 99);
  * VGG conv unit: 3x3 conv, ReLU, BN (BN *after* the ReLU);
  * compact unit: 1x1 conv C_in -> t, 3x3 conv t -> t (stride s), FE(t),
    1x1 conv t -> C_out (then ReLU, BN in VGG; BN, ReLU at a block's end in
    ResNet), t = C_out / r;
  * FE(t) (feature enhancement): global average pool -> FC t -> t without
    bias -> sigmoid -> multiply each channel by its factor;
  * every ResNet block has a projection shortcut (1x1 conv with the block's
    stride, BN); output = ReLU(main + shortcut); the strides are the paper's
    code's (ResNet18 halves in the first block of every stage, ResNet50 in
    the second);
  * VGG classifier: flatten -> FC 512, ReLU -> FC 256, ReLU -> FC classes;
    ResNet head: 2x2 avgpool stride 2 -> flatten -> FC classes (with bias).

Weights start from PyTorch's default initialization: a Kaiming fan-out
initialization of the convolutions was tried and made the compact models,
whose 1x1 reductions are narrow, train far worse (resnet18c at lr 1e-3:
45 % instead of 99 % when fitting 96 images in 60 steps).

Module names follow the C zoo's layer names ("features.3.conv3x3",
"layer2.0.unit1.fe", "layer1.0.shortcut.conv", "head.fc", ...), so the ONNX
node names torch.onnx.export derives from them read the same in EdgeDI.

Self-check: `python3 tools/train/models.py --check` builds all eight on
3x200x200 and asserts parameters and FLOPs against the MODELS.md table.
"""
import argparse
import sys

import torch
import torch.nn as nn

NAMES = ("vgg13", "vgg13c", "vgg16", "vgg16c",
         "resnet18", "resnet18c", "resnet50", "resnet50c")

# The compression ratio each compact model uses in the paper (0 = original).
DEFAULT_RATIO = {"vgg13": 0, "vgg13c": 4, "vgg16": 0, "vgg16c": 8,
                 "resnet18": 0, "resnet18c": 8, "resnet50": 0, "resnet50c": 32}

# MODELS.md, "Cost on 3 x 200 x 200": parameters (M), GFLOP (2 per MAC of
# conv and FC layers only), with the number of digits the table gives.
TABLE_200 = {
    "vgg13": (18.98, 17.74),
    "vgg13c": (10.91, 2.764),
    "vgg16": (24.29, 24.31),
    "vgg16c": (10.29, 1.287),
    "resnet18": (11.55, 3.067),
    "resnet18c": (1.106, 0.331),
    "resnet50": (38.17, 16.99),
    "resnet50c": (18.86, 7.317),
}

VGG_FEATURES = {
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M",
         512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
}

RESNET_ARCH = {
    18: dict(per_stage=(2, 2, 2, 2),
             channels=(64, 64, 128, 128, 256, 256, 512, 512),
             strides=(2, 1, 2, 1, 2, 1, 2, 1)),
    50: dict(per_stage=(3, 4, 6, 3),
             channels=(256,) * 3 + (512,) * 4 + (1024,) * 6 + (2048,) * 3,
             strides=(1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1)),
}


def conv(c_in, c_out, k, stride=1, pad=None):
    if pad is None:
        pad = k // 2
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=False)


class FE(nn.Module):
    """Feature enhancement: x * sigmoid(W . mean_hw(x)), W t x t, no bias.

    Exported by torch.onnx (opset 13) as
      GlobalAveragePool -> Flatten -> MatMul (W^T as an initializer) ->
      Sigmoid -> Reshape [1, t, 1, 1] (constant shape) -> Mul(x, gate).
    """

    def __init__(self, t):
        super().__init__()
        self.t = t
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(t, t, bias=False)

    def forward(self, x):
        s = torch.flatten(self.pool(x), 1)
        s = torch.sigmoid(self.fc(s))
        return x * s.reshape(-1, self.t, 1, 1)


class Compact(nn.Module):
    """1x1 C_in -> t, 3x3 t -> t (stride s), FE(t), 1x1 t -> C_out."""

    def __init__(self, c_in, t, c_out, stride=1):
        super().__init__()
        self.reduce = conv(c_in, t, 1)
        self.conv3x3 = conv(t, t, 3, stride)
        self.fe = FE(t)
        self.expand = conv(t, c_out, 1)

    def forward(self, x):
        return self.expand(self.fe(self.conv3x3(self.reduce(x))))


# ---- VGG ------------------------------------------------------------------

class VGGUnit(nn.Module):
    """Original: 3x3 conv, ReLU, BN. Compact: compact unit, ReLU, BN."""

    def __init__(self, c_in, v, ratio):
        super().__init__()
        if ratio:
            c = Compact(c_in, v // ratio, v)
            self.reduce, self.conv3x3, self.fe, self.expand = (
                c.reduce, c.conv3x3, c.fe, c.expand)
            self.compact = True
        else:
            self.conv3x3 = conv(c_in, v, 3)
            self.compact = False
        self.relu = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(v)

    def forward(self, x):
        if self.compact:
            x = self.expand(self.fe(self.conv3x3(self.reduce(x))))
        else:
            x = self.conv3x3(x)
        return self.bn(self.relu(x))


class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        return self.pool(x)


class VGGClassifier(nn.Module):
    def __init__(self, in_features, classes, width_div=1):
        super().__init__()
        h1, h2 = 512 // width_div, 256 // width_div
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_features, h1)
        self.relu1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc3 = nn.Linear(h2, classes)

    def forward(self, x):
        x = self.relu1(self.fc1(self.flatten(x)))
        return self.fc3(self.relu2(self.fc2(x)))


class VGG(nn.Module):
    def __init__(self, depth, ratio=0, in_hw=(200, 200), classes=6,
                 in_ch=3, width_div=1):
        super().__init__()
        feats = [v if v == "M" else v // width_div
                 for v in VGG_FEATURES[depth]]
        if ratio:
            for v in feats:
                if v != "M" and v % ratio:
                    raise ValueError(f"ratio {ratio} does not divide {v}")
        layers, c, (h, w) = [], in_ch, in_hw
        for v in feats:
            if v == "M":
                layers.append(Pool())
                h, w = h // 2, w // 2
            else:
                layers.append(VGGUnit(c, v, ratio))
                c = v
        if h < 1 or w < 1:
            raise ValueError(f"input {in_hw} too small for VGG{depth}")
        self.features = nn.Sequential(*layers)
        self.classifier = VGGClassifier(c * h * w, classes, width_div)

    def forward(self, x):
        return self.classifier(self.features(x))


# ---- ResNet ---------------------------------------------------------------

class Stem(nn.Module):
    def __init__(self, in_ch, channels=64):
        super().__init__()
        self.conv = conv(in_ch, channels, 3, stride=2, pad=0)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Shortcut(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = conv(c_in, c_out, 1, stride)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.conv(x))


class CompactBN(nn.Module):
    """A compact unit followed by BN, ReLU (the end of a ResNet main path)."""

    def __init__(self, c_in, t, c_out, stride):
        super().__init__()
        c = Compact(c_in, t, c_out, stride)
        self.reduce, self.conv3x3, self.fe, self.expand = (
            c.reduce, c.conv3x3, c.fe, c.expand)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.expand(self.fe(self.conv3x3(self.reduce(x))))
        return self.relu(self.bn(x))


class Block(nn.Module):
    def __init__(self, depth, ratio, c_in, c_out, stride):
        super().__init__()
        self.kind = (depth, bool(ratio))
        if depth == 18 and not ratio:
            self.conv1 = conv(c_in, c_out, 3, stride)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv2 = conv(c_out, c_out, 3)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.relu2 = nn.ReLU(inplace=True)
        elif depth == 50 and not ratio:
            t = c_out // 4
            self.conv1 = conv(c_in, t, 1)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv2 = conv(t, t, 3, stride)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv3 = conv(t, c_out, 1)
            self.bn3 = nn.BatchNorm2d(c_out)
            self.relu3 = nn.ReLU(inplace=True)
        elif depth == 18:
            t = c_out // ratio
            # Two compact units; only the second ends in BN, ReLU.
            self.unit1 = Compact(c_in, t, c_out, stride)
            self.unit2 = CompactBN(c_out, t, c_out, 1)
        else:
            t = c_out // ratio
            self.unit1 = CompactBN(c_in, t, c_out, stride)
        self.shortcut = Shortcut(c_in, c_out, stride)
        self.relu = nn.ReLU(inplace=True)

    def main_path(self, x):
        depth, compact = self.kind
        if depth == 18 and not compact:
            x = self.relu1(self.bn1(self.conv1(x)))
            return self.relu2(self.bn2(self.conv2(x)))
        if depth == 50 and not compact:
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.conv2(x))
            return self.relu3(self.bn3(self.conv3(x)))
        if depth == 18:
            return self.unit2(self.unit1(x))
        return self.unit1(x)

    def forward(self, x):
        return self.relu(self.main_path(x) + self.shortcut(x))


class Head(nn.Module):
    def __init__(self, in_features, classes):
        super().__init__()
        self.avgpool = nn.AvgPool2d(2, 2)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_features, classes)

    def forward(self, x):
        return self.fc(self.flatten(self.avgpool(x)))


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


class ResNet(nn.Module):
    def __init__(self, depth, ratio=0, in_hw=(200, 200), classes=6,
                 in_ch=3, width_div=1):
        super().__init__()
        a = RESNET_ARCH[depth]
        channels = [c // width_div for c in a["channels"]]
        if ratio:
            for c in channels:
                if c % ratio:
                    raise ValueError(f"ratio {ratio} does not divide {c}")
        c = 64 // width_div
        self.stem = Stem(in_ch, c)
        h, w = _out(in_hw[0], 3, 2, 0), _out(in_hw[1], 3, 2, 0)
        i = 0
        for stage, n in enumerate(a["per_stage"]):
            blocks = []
            for _ in range(n):
                c_out, s = channels[i], a["strides"][i]
                blocks.append(Block(depth, ratio, c, c_out, s))
                h, w = _out(h, 3, s, 1), _out(w, 3, s, 1)
                c, i = c_out, i + 1
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"input {in_hw} too small for ResNet{depth}")
        self.head = Head(c * h * w, classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)


def build(name, ratio=None, in_hw=(200, 200), classes=6, in_ch=3,
          width_div=1):
    """The model `name` (one of NAMES). ratio=None: the paper's ratio for
    compact models; a compact model with another r may be asked for.
    width_div > 1 divides every channel count and hidden FC width (not the
    paper's model: only for the small pattern files of export_testnets.py)."""
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(NAMES)}")
    if isinstance(in_hw, int):
        in_hw = (in_hw, in_hw)
    r = DEFAULT_RATIO[name] if ratio is None else ratio
    if DEFAULT_RATIO[name] == 0 and r:
        raise ValueError(f"{name} is an original model; a ratio applies "
                         f"only to {name}c")
    if DEFAULT_RATIO[name] and not r:
        raise ValueError(f"{name} is compact: ratio must be positive")
    base = name.rstrip("c")
    if base.startswith("vgg"):
        return VGG(int(base[3:]), r, in_hw, classes, in_ch, width_div)
    return ResNet(int(base[6:]), r, in_hw, classes, in_ch, width_div)


# ---- cost -----------------------------------------------------------------

def count_params(model):
    """As MODELS.md counts: parameters() (BN scale and shift included, running
    statistics not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model, in_shape=(1, 3, 200, 200)):
    """2 FLOPs per multiply-add of Conv2d and Linear layers; nothing else."""
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += 2 * k * out.numel()

    def fc_hook(m, inp, out):
        total[0] += 2 * m.in_features * out.numel()

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(fc_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(in_shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total[0] // in_shape[0]


def _matches(value, table_value):
    """value rounds to table_value at the table's precision."""
    s = repr(table_value)
    decimals = len(s.split(".")[1]) if "." in s else 0
    return abs(value - table_value) <= 0.5 * 10 ** -decimals + 1e-12


def check(verbose=True):
    torch.manual_seed(0)
    ok = True
    for name in NAMES:
        m = build(name)
        p, f = count_params(m) / 1e6, count_flops(m) / 1e9
        tp, tf = TABLE_200[name]
        good = _matches(p, tp) and _matches(f, tf)
        ok &= good
        if verbose:
            print(f"{name:10s} params {p:9.4f} M (table {tp:>6}) "
                  f"GFLOP {f:9.4f} (table {tf:>6})  "
                  f"{'ok' if good else 'MISMATCH'}")
    # The spatial sizes MODELS.md states.
    x = torch.zeros(1, 3, 200, 200)
    m = build("resnet18").eval()
    with torch.no_grad():
        y = m.stem(x)
        assert y.shape[-1] == 99, y.shape
        sizes = []
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            for b in layer:
                y = b(y)
                sizes.append(y.shape[-1])
    assert sizes == [50, 50, 25, 25, 13, 13, 7, 7], sizes
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="assert parameters and FLOPs against MODELS.md")
    ap.add_argument("--model", choices=NAMES,
                    help="print one model's structure and cost")
    ap.add_argument("--size", type=int, default=200, help="input H = W")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.model:
        m = build(a.model, in_hw=(a.size, a.size))
        print(m)
        print(f"parameters {count_params(m)}  "
              f"FLOPs {count_flops(m, (1, 3, a.size, a.size))}")
    if a.check or not a.model:
        if not check():
            print("models.py --check: MISMATCH with MODELS.md",
                  file=sys.stderr)
            return 1
        print("models.py --check: all eight match MODELS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
