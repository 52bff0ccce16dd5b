#!/usr/bin/env python3
"""Trains one of the paper's models on NEU-CLS (or the synthetic set) and
exports it to ONNX for EdgeDI.

    nice -n 15 python3 tools/train/train.py --data out/neu-synth \\
        --model resnet18c --epochs 8 --epochs-low 2 \\
        --onnx models/resnet18c_neu.onnx

Training as the paper: SGD with momentum 0.9, learning rate 1e-3 for
--epochs epochs, then 1e-4 for --epochs-low more; cross-entropy; batch
--batch. Input exactly as EdgeDI preprocesses it (runtime/preprocess.h):
uint8 gray x -> x / 255, replicated to three channels, no mean or std.
Training images are mirrored at random (left-right, up-down), which keeps
every class what it is; nothing else is augmented.

After each epoch (--eval-every) the held-out split is scored and a
checkpoint (state dict, optimizer, schedule position) written to
--checkpoint; --resume continues an interrupted schedule exactly (each
epoch's order depends only on --seed and the epoch). When the schedule is
complete the model (eval mode: BN uses its running statistics) is exported
with torch.onnx.export (opset 13, input "input" [1,3,H,W], output "logits",
constant folding), checked with onnx.checker, run through onnx_torch to
prove it matches the torch model, and the held-out accuracy is printed.

CPU etiquette: --threads (default 1) bounds torch's threads; run it under
`nice -n 15`. --max-minutes (default 28) stops before an epoch that would
end past it; continue with --resume, or pass --finish to cut the 1e-3
phase short so the 1e-4 epochs still run within the limit.
"""
import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dataset  # noqa: E402
import export  # noqa: E402
import models  # noqa: E402


def evaluate(model, imgs, labels, batch=32):
    """(accuracy, logits [N, classes]) of the model in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            out.append(model(dataset.to_model_input(imgs[i:i + batch])))
    logits = torch.cat(out)
    acc = float((logits.argmax(1).numpy() == labels).mean())
    return acc, logits


def augment(imgs, rng):
    """Random left-right and up-down mirrors of a uint8 [N,H,W] batch."""
    out = imgs.copy()
    for i in range(len(out)):
        if rng.random() < 0.5:
            out[i] = out[i][:, ::-1]
        if rng.random() < 0.5:
            out[i] = out[i][::-1, :]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="out/neu-synth",
                    help="synthetic set (labels.csv) or a NEU-CLS folder")
    ap.add_argument("--model", default="resnet18c", choices=models.NAMES)
    ap.add_argument("--ratio", type=int, default=None,
                    help="compression ratio of a compact model "
                         "(default: the paper's)")
    ap.add_argument("--size", type=int, default=dataset.SIZE_PX,
                    help="input H = W; images are resized to it")
    ap.add_argument("--epochs", type=int, default=8, help="epochs at --lr")
    ap.add_argument("--epochs-low", type=int, default=2,
                    help="epochs at --lr-low after them")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-low", type=float, default=1e-4)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--split-seed", type=int, default=dataset.DEFAULT_SEED,
                    help="seed of the held-out split of a real NEU-CLS "
                         "folder (the synthetic set's is in labels.csv)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (on a shared, loaded CPU one thread "
                         "runs faster than two that wait for each other)")
    ap.add_argument("--max-minutes", type=float, default=28.0)
    ap.add_argument("--train-limit", type=int, default=0,
                    help="use only this many training images (smoke tests)")
    ap.add_argument("--onnx", help="write the trained model here")
    ap.add_argument("--checkpoint",
                    help="write the state dict and schedule position here "
                         "(.pt) after every epoch")
    ap.add_argument("--resume", metavar="PT",
                    help="continue the schedule from this checkpoint")
    ap.add_argument("--finish", action="store_true",
                    help="when --max-minutes is short, cut the lr phase "
                         "so that the --epochs-low epochs still run")
    ap.add_argument("--eval-every", type=int, default=1,
                    help="score the held-out split every N epochs "
                         "(0: only at the end)")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t_start = time.time()
    eval_s = 0.0

    samples = dataset.load_index(a.data, a.split_seed)
    train_s = [s for s in samples if s.split == "train"]
    held_s = [s for s in samples if s.split == "heldout"]
    if a.train_limit:
        train_s = [train_s[i] for i in
                   rng.permutation(len(train_s))[:a.train_limit]]
    x_train, y_train = dataset.load_tensor(train_s, a.size)
    x_held, y_held = dataset.load_tensor(held_s, a.size)
    print(f"data {a.data}: {len(train_s)} train, {len(held_s)} held out, "
          f"{a.size}x{a.size}", flush=True)

    model = models.build(a.model, a.ratio, (a.size, a.size),
                         len(dataset.CLASSES))
    ratio = models.DEFAULT_RATIO[a.model] if a.ratio is None else a.ratio
    params = models.count_params(model)
    flops = models.count_flops(model, (1, 3, a.size, a.size))
    print(f"model {a.model} (r={ratio}): {params} parameters, "
          f"{flops / 1e9:.4f} GFLOP per image", flush=True)

    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum,
                          weight_decay=a.weight_decay)
    done, high_done, prior_s = 0, 0, 0.0
    if a.resume:
        ck = torch.load(a.resume, map_location="cpu")
        if ck["meta"]["model"] != a.model or \
                ck["meta"]["input"] != f"1x3x{a.size}x{a.size}":
            sys.exit(f"train.py: {a.resume} holds {ck['meta']['model']} "
                     f"{ck['meta']['input']}, not {a.model} at {a.size}")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        done, high_done = ck["epochs_done"], ck["high_done"]
        prior_s = ck.get("train_s", 0.0)
        print(f"resumed {a.resume}: {done} epochs done ({high_done} at lr "
              f"{a.lr:g})", flush=True)

    total_epochs = a.epochs + a.epochs_low
    epoch_s, acc = [], None
    while done < total_epochs:
        # When --max-minutes leaves room for fewer epochs than planned, the
        # run stops (to be continued with --resume), or with --finish cuts
        # the high-rate phase short so that the low-rate epochs still end it.
        left = total_epochs - done
        if epoch_s:
            room = int((a.max_minutes * 60 - (time.time() - t_start) -
                        eval_s) // max(epoch_s))
            if room < 1:
                print(f"stopping after epoch {done}: --max-minutes "
                      f"{a.max_minutes} would be exceeded (continue with "
                      f"--resume)", flush=True)
                break
            left = min(left, room)
        high = high_done < a.epochs
        if a.finish and high and left - 1 < a.epochs_low:
            high = False
        lr = a.lr if high else a.lr_low
        for group in opt.param_groups:
            group["lr"] = lr
        t0 = time.time()
        model.train()
        # The epoch's order depends on the seed and the epoch only, so a
        # resumed run sees what an uninterrupted one would.
        erng = np.random.default_rng([a.seed, done])
        perm = erng.permutation(len(x_train))
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            if len(idx) < 2:  # BN needs more than one sample
                continue
            xb = dataset.to_model_input(augment(x_train[idx], erng))
            yb = torch.from_numpy(y_train[idx])
            opt.zero_grad()
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        epoch_s.append(time.time() - t0)
        done += 1
        high_done += high
        line = (f"epoch {done}/{total_epochs} lr {lr:g}: loss "
                f"{loss_sum / seen:.4f}, train acc {correct / seen:.4f} "
                f"({epoch_s[-1]:.0f} s)")
        if a.eval_every and (done % a.eval_every == 0 or
                             done == total_epochs):
            t1 = time.time()
            acc, _ = evaluate(model, x_held, y_held)
            eval_s = time.time() - t1
            line += f", held-out acc {acc:.4f} ({eval_s:.0f} s)"
        print(line, flush=True)
        if a.checkpoint:
            save_checkpoint(a.checkpoint, model, opt, done, high_done,
                            prior_s + sum(epoch_s), a, ratio)

    t1 = time.time()
    acc, _ = evaluate(model, x_held, y_held)
    eval_s = time.time() - t1
    meta = make_meta(a, ratio, params, flops, len(held_s), acc, done,
                     high_done)
    if a.checkpoint:
        save_checkpoint(a.checkpoint, model, opt, done, high_done,
                        prior_s + sum(epoch_s), a, ratio, meta)
        print(f"checkpoint {a.checkpoint}")
    complete = done >= total_epochs
    if a.onnx and not complete:
        print(f"schedule incomplete ({done}/{total_epochs} epochs): no ONNX "
              f"written; continue with --resume {a.checkpoint}")
    elif a.onnx:
        os.makedirs(os.path.dirname(os.path.abspath(a.onnx)), exist_ok=True)
        data = export.export_onnx(model, a.onnx, (a.size, a.size), meta)
        xs = [dataset.to_model_input(x_held[i:i + 1]) for i in
              range(0, len(x_held), max(1, len(x_held) // 8))]
        diff = export.verify(model, data, xs)
        print(f"onnx {a.onnx}: {len(data)} bytes, opset {export.OPSET}; "
              f"matches torch on {len(xs)} held-out images "
              f"(max diff {diff:.2e} of the largest logit)")
    wall = time.time() - t_start
    print(f"held-out accuracy {acc:.4f} ({int(round(acc * len(held_s)))}/"
          f"{len(held_s)}) after {done} epochs; this run: "
          f"{len(epoch_s)} epochs, wall {wall / 60:.1f} min; training time "
          f"in all {(prior_s + sum(epoch_s)) / 60:.1f} min")
    print("RESULT " + json.dumps({**meta, "run_wall_s": round(wall),
                                  "epoch_s": [round(t) for t in epoch_s]}))
    return 0


def make_meta(a, ratio, params, flops, heldout_n, acc, done, high_done):
    """What the ONNX file's metadata_props and the checkpoint record."""
    meta = {
        "model": a.model, "ratio": ratio, "input": f"1x3x{a.size}x{a.size}",
        "classes": ",".join(dataset.CLASSES),
        "preprocess": "uint8 gray x -> x/255, replicated to 3 channels",
        "data": os.path.basename(os.path.normpath(a.data)),
        "heldout_images": heldout_n,
        "epochs": f"{high_done} at lr {a.lr:g}, "
                  f"{done - high_done} at lr {a.lr_low:g}",
        "optimizer": f"SGD momentum {a.momentum} weight_decay "
                     f"{a.weight_decay} batch {a.batch} seed {a.seed}",
        "parameters": params, "flops": flops,
    }
    if acc is not None:
        meta["heldout_accuracy"] = f"{acc:.4f}"
    return meta


def save_checkpoint(path, model, opt, done, high_done, train_s, a, ratio,
                    meta=None):
    """State dict, optimizer state and schedule position (for --resume and
    evaluate.py), written atomically."""
    if meta is None:
        meta = make_meta(a, ratio, None, None, None, None, done, high_done)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save({"state_dict": model.state_dict(),
                "optimizer": opt.state_dict(), "epochs_done": done,
                "high_done": high_done, "train_s": train_s, "meta": meta},
               tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
