#!/usr/bin/env python3
"""Scores a model on a split of the data and writes its predictions and
logits, the reference that EdgeDI's own predictions are checked against.

    python3 tools/train/evaluate.py --onnx models/resnet18c_neu.onnx \\
        --data out/neu-synth --out out/eval/resnet18c
    python3 tools/train/evaluate.py --checkpoint out/train/resnet18c_neu.pt \\
        --data out/neu-synth --out out/eval/resnet18c-torch

--onnx runs the ONNX file with PyTorch's operators node by node
(onnx_torch.py, the "PyTorch-equivalent" runtime: Debian has no ONNX
Runtime); --checkpoint runs the torch model train.py saved. Each image is
run alone (batch 1, as EdgeDI runs it), preprocessed as EdgeDI does
(x / 255, gray to three channels). Given both, it also reports how far the
two disagree.

--write-images DIR writes the images as the model sees them (resized to
its input size, if it is not 200x200: EdgeDI cannot reproduce PIL's
resampling bit for bit, so it must be given these) in the same layout as
the synthetic set, in predictions.csv order.

Writes to --out:
  predictions.csv  file,class,label,pred,pred_class,logit_0..logit_{K-1}
  logits.f32       N x K little-endian float32, rows in predictions.csv order
  labels.txt       the class names, one a line (index = label)

--compare checks another runtime's logits (EdgeDI's) against these: either
one N x K float32 file in predictions.csv order, or a folder holding one
raw float32 file per image named after the image (crazing_7.pgm ->
crazing_7.f32, or crazing_7.pgm.f32 / .bin), as `edgedi run --output`
writes them. It prints the share of equal top-1 predictions and the largest
logit difference relative to the image's largest |logit|, and fails unless
>= --min-agree of predictions agree and every difference is <= --tol.
"""
import argparse
import csv
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dataset  # noqa: E402
import models  # noqa: E402
from onnx_torch import OnnxTorch  # noqa: E402


def load_checkpoint(path):
    ck = torch.load(path, map_location="cpu")
    meta = ck["meta"]
    size = int(meta["input"].split("x")[-1])
    m = models.build(meta["model"], int(meta["ratio"]) or None,
                     (size, size), len(dataset.CLASSES))
    m.load_state_dict(ck["state_dict"])
    return m.eval(), size


def onnx_input_size(g):
    dims = [d.dim_value for d in
            next(i for i in g.model.graph.input
                 if i.name not in g.consts).type.tensor_type.shape.dim]
    return dims[2]


def run_all(fn, imgs):
    out = []
    with torch.no_grad():
        for i in range(len(imgs)):
            out.append(fn(dataset.to_model_input(imgs[i:i + 1])).reshape(-1))
    return torch.stack(out).numpy().astype(np.float32)


def read_other(path, samples, k):
    if os.path.isdir(path):
        rows = []
        for s in samples:
            base = os.path.basename(s.path)
            stem = os.path.splitext(base)[0]
            for cand in (stem + ".f32", base + ".f32", stem + ".bin",
                         base + ".bin"):
                p = os.path.join(path, cand)
                if os.path.exists(p):
                    rows.append(np.fromfile(p, "<f4"))
                    break
            else:
                raise FileNotFoundError(f"{path}: no logits for {base}")
        other = np.stack(rows)
    else:
        other = np.fromfile(path, "<f4").reshape(len(samples), -1)
    if other.shape != (len(samples), k):
        raise ValueError(f"{path}: logits of shape {other.shape}, "
                         f"expected {(len(samples), k)}")
    return other


def compare(ref, other):
    """(share of equal argmax, largest |ref - other| / max |ref| per image)."""
    agree = float((ref.argmax(1) == other.argmax(1)).mean())
    scale = np.maximum(np.abs(ref).max(1), 1e-12)
    rel = float((np.abs(ref - other).max(1) / scale).max())
    return agree, rel


def write_samples(out_dir, per_class, samples, imgs, logits, ref_name,
                  model_path):
    os.makedirs(out_dir, exist_ok=True)
    picked = []
    for label in range(len(dataset.CLASSES)):
        idx = [i for i, s in enumerate(samples) if s.label == label]
        idx.sort(key=lambda i: natural_key(os.path.basename(samples[i].path)))
        picked += idx[:per_class]
    with open(os.path.join(out_dir, "expected.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "pred_class"] +
                   [f"logit_{c}" for c in dataset.CLASSES])
        for i in picked:
            s = samples[i]
            name = os.path.splitext(os.path.basename(s.path))[0] + ".pgm"
            dataset.write_pgm(os.path.join(out_dir, name), imgs[i])
            w.writerow([name, s.cls, dataset.CLASSES[int(logits[i].argmax())]]
                       + [f"{float(v):.6g}" for v in logits[i]])
    print(f"wrote {len(picked)} samples and expected.csv ({ref_name} "
          f"outputs of {os.path.basename(model_path)}) to {out_dir}")


def write_images(out_dir, samples, imgs):
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "label", "split"])
        for s, img in zip(samples, imgs):
            name = os.path.splitext(os.path.basename(s.path))[0] + ".pgm"
            dataset.write_pgm(os.path.join(out_dir, "images", name), img)
            w.writerow([f"images/{name}", s.cls, s.label, s.split])
    print(f"wrote {len(samples)} images ({imgs.shape[2]}x{imgs.shape[1]}) "
          f"and labels.csv to {out_dir}")


def natural_key(name):
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--onnx")
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", default="out/neu-synth")
    ap.add_argument("--split", default="heldout",
                    choices=("heldout", "train", "all"))
    ap.add_argument("--split-seed", type=int, default=dataset.DEFAULT_SEED)
    ap.add_argument("--out", help="folder for predictions.csv, logits.f32")
    ap.add_argument("--compare", help="another runtime's logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--min-agree", type=float, default=0.999)
    ap.add_argument("--samples", metavar="DIR",
                    help="copy the first --samples-per-class images of each "
                         "class of the split to DIR (8-bit PGM), with "
                         "expected.csv: their labels, predictions, logits")
    ap.add_argument("--samples-per-class", type=int, default=1)
    ap.add_argument("--write-images", metavar="DIR",
                    help="write the split's images as the model sees them "
                         "(resized to its input, 8-bit PGM) to DIR/images "
                         "with DIR/labels.csv, for EdgeDI to run")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if not a.onnx and not a.checkpoint:
        ap.error("give --onnx or --checkpoint (or both)")
    torch.set_num_threads(a.threads)

    runs = []
    if a.onnx:
        g = OnnxTorch(a.onnx)
        runs.append(("onnx", g, onnx_input_size(g)))
    if a.checkpoint:
        m, size = load_checkpoint(a.checkpoint)
        runs.append(("torch", m, size))
    sizes = {r[2] for r in runs}
    if len(sizes) != 1:
        sys.exit(f"evaluate.py: the models' input sizes differ: {sizes}")
    size = sizes.pop()

    samples = [s for s in dataset.load_index(a.data, a.split_seed)
               if a.split == "all" or s.split == a.split]
    imgs, labels = dataset.load_tensor(samples, size)
    results = {}
    for name, fn, _ in runs:
        t0 = time.time()
        logits = run_all(fn, imgs)
        acc = float((logits.argmax(1) == labels).mean())
        results[name] = logits
        print(f"{name}: {a.split} accuracy {acc:.4f} "
              f"({int((logits.argmax(1) == labels).sum())}/{len(labels)}), "
              f"{(time.time() - t0) / len(labels) * 1e3:.1f} ms per image")
    ref_name = "onnx" if "onnx" in results else "torch"
    ref = results[ref_name]
    if len(results) == 2:
        agree, rel = compare(results["torch"], results["onnx"])
        print(f"onnx vs torch: {agree * 100:.2f} % equal predictions, "
              f"max logit difference {rel:.2e} of the largest")

    if a.out:
        os.makedirs(a.out, exist_ok=True)
        k = ref.shape[1]
        with open(os.path.join(a.out, "predictions.csv"), "w",
                  newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "class", "label", "pred", "pred_class"] +
                       [f"logit_{j}" for j in range(k)])
            for s, row in zip(samples, ref):
                p = int(row.argmax())
                w.writerow([os.path.relpath(s.path, a.data), s.cls, s.label,
                            p, dataset.CLASSES[p]] +
                           [repr(float(v)) for v in row])
        ref.astype("<f4").tofile(os.path.join(a.out, "logits.f32"))
        with open(os.path.join(a.out, "labels.txt"), "w") as f:
            f.write("\n".join(dataset.CLASSES) + "\n")
        print(f"wrote {a.out}/predictions.csv and logits.f32 "
              f"({len(samples)} x {k}, from {ref_name})")

    if a.write_images:
        write_images(a.write_images, samples, imgs)

    if a.samples:
        write_samples(a.samples, a.samples_per_class, samples, imgs, ref,
                      ref_name, a.onnx or a.checkpoint)

    if a.compare:
        other = read_other(a.compare, samples, ref.shape[1])
        agree, rel = compare(ref, other)
        ok = agree >= a.min_agree and rel <= a.tol
        print(f"{a.compare} vs {ref_name}: {agree * 100:.2f} % equal "
              f"predictions, max logit difference {rel:.2e} of the largest "
              f"-> {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
