#!/usr/bin/env python3
"""A synthetic steel-surface defect set shaped like NEU-CLS, and a loader for
the real NEU-CLS folder layout.

NEU-CLS (Northeastern University surface defect database): 1800 gray
200x200 images of hot-rolled steel strip, 300 of each of six classes. This
module writes a stand-in with the same shape, so that EdgeDI's training,
accuracy and exactness checks can run where the real set is not at hand:

    python3 tools/train/dataset.py --out out/neu-synth [--seed 2023]

writes out/neu-synth/images/<class>_<k>.pgm (binary P5, 8-bit gray, k = 1
.. 300, the flat layout and file naming of NEU-CLS's Kaggle copy) and
out/neu-synth/labels.csv (file,class,label,split). The held-out split is 20 %
of each class (60 images), chosen by a seeded permutation; split() makes the
same choice for any folder of images, the real set included.

Every image is a plausible steel surface: a mean gray level, an illumination
gradient, rolling streaks along the rolling direction, a fine grain, and
sensor noise, all drawn at random per image; on it one defect of its class,
at a random place, size, orientation, contrast and polarity. The rolling
direction is horizontal or vertical and the image may be mirrored. Classes:

  crazing          a network of fine dark cracks (zero crossings of band-pass
                   noise), over all or a large part of the surface
  inclusion        one to four elongated dark (sometimes bright) slag streaks
                   or chains of spots along the rolling direction
  patches          large irregular blotches with soft edges (thresholded
                   low-frequency noise), dark or bright
  pitted_surface   many small round pits, scattered or clustered in a band
  rolled-in_scale  many short flakes elongated along the rolling direction,
                   in clusters, with bright rims
  scratches        one to five long thin lines, nearly parallel, slightly
                   curved, sometimes broken, bright or dark

Contrast runs from faint (near the noise) to strong, and a few images of any
class carry stray pits, so the task is learnable but not trivial.

Pixel convention, as EdgeDI's runtime/preprocess.h: uint8 x -> x / 255, gray
replicated to three channels (load_tensor()).
"""
import argparse
import csv
import os
import re
import sys
import time

import numpy as np

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface",
           "rolled-in_scale", "scratches")
# NEU-CLS's original file names use two-letter codes (Cr_1.bmp ...).
ABBREV = {"cr": "crazing", "in": "inclusion", "pa": "patches",
          "ps": "pitted_surface", "rs": "rolled-in_scale", "sc": "scratches"}

SIZE_PX = 200
PER_CLASS = 300
HELDOUT_FRACTION = 0.2
DEFAULT_SEED = 2023
IMAGE_EXTS = (".pgm", ".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


# ---- noise ------------------------------------------------------------------

def band_noise(rng, n, sigma_along, sigma_across, angle=0.0):
    """n x n unit-variance noise, white noise smoothed by a Gaussian of the
    given widths (pixels) along `angle` (radians, 0 = rows) and across it;
    periodic (FFT), which is invisible at these scales."""
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    fa = fx * c + fy * s   # frequency along the direction
    fc = -fx * s + fy * c  # across it
    tf = np.exp(-2 * np.pi ** 2 * (sigma_along ** 2 * fa ** 2 +
                                    sigma_across ** 2 * fc ** 2))
    x = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * tf).real
    return (x - x.mean()) / (x.std() + 1e-12)


def blur(img, sigma):
    """Isotropic Gaussian blur (periodic)."""
    n = img.shape[0]
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    tf = np.exp(-2 * np.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))
    return np.fft.ifft2(np.fft.fft2(img) * tf).real


def grid(n):
    return np.meshgrid(np.arange(n, dtype=np.float64),
                       np.arange(n, dtype=np.float64), indexing="ij")


def stamp_blobs(n, centers, radii_along, radii_across, angle):
    """Sum of soft elliptical blobs (peak 1) with their long axis along
    `angle`; drawn only in each blob's bounding box."""
    out = np.zeros((n, n))
    c, s = np.cos(angle), np.sin(angle)
    for (cy, cx), ra, rc in zip(centers, radii_along, radii_across):
        r = int(np.ceil(3 * max(ra, rc))) + 1
        y0, y1 = max(0, int(cy) - r), min(n, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(n, int(cx) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.meshgrid(np.arange(y0, y1) - cy, np.arange(x0, x1) - cx,
                             indexing="ij")
        a = xx * c + yy * s
        b = -xx * s + yy * c
        out[y0:y1, x0:x1] += np.exp(-0.5 * ((a / ra) ** 2 + (b / rc) ** 2))
    return out


# ---- the surface ----------------------------------------------------------

def background(rng, n):
    """A defect-free steel surface (float gray levels) and its noise std.
    Rolling direction is along the rows (angle 0); the caller rotates."""
    base = rng.uniform(85, 175)
    yy, xx = grid(n)
    amp = rng.uniform(0, 25)
    g = amp * ((yy - n / 2) * np.sin(rng.uniform(0, 2 * np.pi)) +
               (xx - n / 2) * np.cos(rng.uniform(0, 2 * np.pi))) / n
    streaks = rng.uniform(2, 9) * band_noise(rng, n, rng.uniform(15, 40),
                                             rng.uniform(0.6, 1.5))
    mottle = rng.uniform(0, 6) * band_noise(rng, n, 12, 12)
    grain = rng.uniform(1.5, 5) * band_noise(rng, n, 0.8, 0.8)
    noise_std = rng.uniform(2, 7)
    img = base + g + streaks + mottle + grain
    return img, noise_std


def contrast(rng, lo=14, hi=60):
    """A defect amplitude, faint to strong (log-uniform)."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def region_mask(rng, n, cover_lo, cover_hi, sigma=25):
    """A soft low-frequency mask covering a random fraction of the image."""
    f = band_noise(rng, n, sigma, sigma)
    t = np.quantile(f, 1 - rng.uniform(cover_lo, cover_hi))
    return np.clip((f - t) / 0.4 + 0.5, 0, 1)


def defect_crazing(rng, n):
    angle = rng.uniform(-0.4, 0.4)
    s = rng.uniform(2.5, 5.0)
    field = band_noise(rng, n, s * rng.uniform(1.0, 2.0), s, angle)
    width = rng.uniform(0.12, 0.3)
    cracks = np.exp(-(field / width) ** 2)
    # Cracks are short and broken: modulate them by medium-scale noise.
    cracks *= np.clip(band_noise(rng, n, 6, 6) + rng.uniform(0.3, 1.2), 0, 1)
    if rng.random() < 0.6:
        cracks *= region_mask(rng, n, 0.45, 0.95, sigma=30)
    return -contrast(rng, 16, 60) * cracks


def defect_inclusion(rng, n):
    out = np.zeros((n, n))
    for _ in range(rng.integers(1, 5)):
        angle = rng.normal(0, 0.15)
        length = rng.uniform(8, 45)   # half-length
        cy, cx = rng.uniform(15, n - 15, size=2)
        if rng.random() < 0.5:
            # a solid streak with a rough outline
            blob = stamp_blobs(n, [(cy, cx)], [length], [rng.uniform(1.5, 5)],
                               angle)
        else:
            # a chain of small spots along a line
            k = rng.integers(3, 9)
            t = np.linspace(-length, length, k) + rng.normal(0, 2, k)
            centers = [(cy + ti * np.sin(angle), cx + ti * np.cos(angle))
                       for ti in t]
            blob = stamp_blobs(n, centers, rng.uniform(2, 6, k),
                               rng.uniform(1.2, 3, k), angle)
        blob = np.clip(blob, 0, 1)
        rough = np.clip(1 + 0.5 * band_noise(rng, n, 2, 2), 0, 1.5)
        sign = -1 if rng.random() < 0.8 else 1
        out += sign * contrast(rng, 20, 75) * blob * rough
    return out


def defect_patches(rng, n):
    sigma = rng.uniform(9, 22)
    f = band_noise(rng, n, sigma * rng.uniform(1, 2.5), sigma,
                   rng.normal(0, 0.3))
    cover = rng.uniform(0.12, 0.45)
    t = np.quantile(f, 1 - cover)
    soft = rng.uniform(0.1, 0.5)
    m = np.clip((f - t) / soft, 0, 1)
    m = m * (0.7 + 0.3 * np.clip(band_noise(rng, n, 2, 2), -1, 1))
    sign = -1 if rng.random() < 0.7 else 1
    return sign * contrast(rng, 16, 65) * blur(m, rng.uniform(0.5, 2))


def defect_pitted(rng, n):
    k = int(rng.integers(25, 160))
    if rng.random() < 0.5:
        # clustered in a band across the rolling direction or along it
        c = rng.uniform(30, n - 30)
        w = rng.uniform(15, 50)
        along = rng.uniform(0, n, k)
        across = np.clip(rng.normal(c, w, k), 0, n - 1)
        centers = list(zip(across, along)) if rng.random() < 0.5 else \
            list(zip(along, across))
    else:
        centers = list(rng.uniform(0, n, size=(k, 2)))
    r = rng.uniform(0.8, 3.2, k)
    pits = stamp_blobs(n, centers, r * rng.uniform(1, 1.6, k), r, 0.0)
    pits = np.clip(pits, 0, 1.3)
    out = -contrast(rng, 22, 80) * pits
    # a faint halo of roughened surface around the pits
    out += -rng.uniform(0, 8) * blur(pits, 6) / (blur(pits, 6).max() + 1e-9)
    return out


def defect_rolled_scale(rng, n):
    f = band_noise(rng, n, rng.uniform(3, 8), rng.uniform(0.8, 2.0),
                   rng.normal(0, 0.1))
    t = np.quantile(f, 1 - rng.uniform(0.08, 0.22))
    flakes = np.clip((f - t) / 0.3, 0, 1)
    flakes *= region_mask(rng, n, 0.35, 0.9, sigma=rng.uniform(15, 30))
    a = contrast(rng, 18, 65)
    out = -a * flakes
    # bright rims where the scale was pressed in
    rim = np.clip(blur(flakes, 1.5) - flakes, 0, None)
    out += a * rng.uniform(0.3, 1.2) * rim * 2
    return out


def defect_scratches(rng, n):
    out = np.zeros((n, n))
    yy, xx = grid(n)
    base = rng.uniform(0, np.pi)
    for _ in range(rng.integers(1, 6)):
        ang = base + rng.normal(0, 0.08)
        c, s = np.cos(ang), np.sin(ang)
        cy, cx = rng.uniform(20, n - 20, size=2)
        a = (xx - cx) * c + (yy - cy) * s      # along the scratch
        b = -(xx - cx) * s + (yy - cy) * c     # across it
        b = b - rng.uniform(-1, 1) * 1e-3 * a ** 2  # slight curvature
        half = rng.uniform(30, 120)
        width = rng.uniform(0.5, 1.6)
        line = np.exp(-0.5 * (b / width) ** 2)
        line *= np.clip((half - np.abs(a)) / 6, 0, 1)  # its length, soft ends
        if rng.random() < 0.5:  # broken
            line *= np.clip(band_noise(rng, n, 10, 10, ang) + 0.8, 0, 1)
        sign = 1 if rng.random() < 0.6 else -1
        out += sign * contrast(rng, 18, 70) * line
    return out


DEFECTS = {
    "crazing": defect_crazing,
    "inclusion": defect_inclusion,
    "patches": defect_patches,
    "pitted_surface": defect_pitted,
    "rolled-in_scale": defect_rolled_scale,
    "scratches": defect_scratches,
}


def make_image(seed, label, index, n=SIZE_PX):
    """Image `index` of class `label`: a uint8 n x n array, a pure function of
    (seed, label, index)."""
    rng = np.random.default_rng([seed, label, index])
    img, noise_std = background(rng, n)
    img = img + DEFECTS[CLASSES[label]](rng, n)
    if rng.random() < 0.15:  # a few stray pits on any surface
        k = int(rng.integers(1, 5))
        img -= rng.uniform(15, 40) * stamp_blobs(
            n, list(rng.uniform(0, n, size=(k, 2))), rng.uniform(1, 2.5, k),
            rng.uniform(1, 2.5, k), 0.0)
    img = blur(img, rng.uniform(0.3, 0.9))  # optics
    img = img + rng.normal(0, noise_std, img.shape)
    # rolling direction: rows or columns, and a mirror
    if rng.random() < 0.5:
        img = img.T
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1, :]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- files ----------------------------------------------------------------

def write_pgm(path, img):
    h, w = img.shape
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(img, dtype=np.uint8).tobytes())


def read_pgm(path):
    with open(path, "rb") as f:
        data = f.read()
    # header: magic, width, height, maxval, separated by whitespace/comments
    tokens, pos = [], 0
    while len(tokens) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        tokens.append(data[pos:end])
        pos = end
    if tokens[0] != b"P5" or int(tokens[3]) != 255:
        raise ValueError(f"{path}: not an 8-bit binary PGM")
    w, h = int(tokens[1]), int(tokens[2])
    pos += 1  # the single whitespace after maxval
    img = np.frombuffer(data, np.uint8, w * h, pos)
    return img.reshape(h, w)


def read_gray(path):
    """Any image file as 8-bit gray (PGM natively, others through PIL)."""
    if path.lower().endswith(".pgm"):
        return read_pgm(path)
    from PIL import Image
    with Image.open(path) as im:
        if im.mode != "L":
            im = im.convert("L")
        return np.asarray(im, dtype=np.uint8).copy()


def split(files_by_class, seed=DEFAULT_SEED, heldout=HELDOUT_FRACTION):
    """{class: [file names]} -> {file name: 'train' | 'heldout'}: a seeded
    permutation of each class's sorted files, its first `heldout` fraction
    held out."""
    out = {}
    for label, cls in enumerate(CLASSES):
        names = sorted(files_by_class.get(cls, []))
        rng = np.random.default_rng([seed, 1000 + label])
        perm = rng.permutation(len(names))
        k = int(round(heldout * len(names)))
        for rank, i in enumerate(perm):
            out[names[i]] = "heldout" if rank < k else "train"
    return out


def class_of(filename):
    """The class a NEU-CLS file name denotes, or None: 'crazing_12.bmp',
    'rolled-in_scale_3.jpg', 'Cr_1.bmp', 'PS_300.bmp'."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    m = re.match(r"^(.*?)[_\- ]?\(?(\d+)\)?$", stem)
    prefix = (m.group(1) if m else stem).strip("_- ").lower()
    prefix = prefix.replace(" ", "_")
    if prefix in CLASSES:
        return prefix
    if prefix in ABBREV:
        return ABBREV[prefix]
    for alias, cls in (("rolled_in_scale", "rolled-in_scale"),
                       ("rolled-in-scale", "rolled-in_scale"),
                       ("pitted-surface", "pitted_surface"),
                       ("pitted", "pitted_surface")):
        if prefix == alias:
            return cls
    return None


def generate(out_dir, seed=DEFAULT_SEED, per_class=PER_CLASS, log=True):
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    rows, by_class = [], {c: [] for c in CLASSES}
    t0 = time.time()
    for label, cls in enumerate(CLASSES):
        for k in range(1, per_class + 1):
            name = f"{cls}_{k}.pgm"
            write_pgm(os.path.join(img_dir, name), make_image(seed, label, k))
            by_class[cls].append(name)
            rows.append((name, cls, label))
        if log:
            print(f"  {cls}: {per_class} images ({time.time() - t0:.0f} s)",
                  flush=True)
    sp = split(by_class, seed)
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "label", "split"])
        for name, cls, label in rows:
            w.writerow([f"images/{name}", cls, label, sp[name]])
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write(f"Synthetic NEU-CLS-like steel defects, written by "
                f"tools/train/dataset.py --seed {seed}.\n"
                f"{len(rows)} 200x200 8-bit gray PGM images, {per_class} per "
                f"class; labels.csv has the held-out split.\n")
    return rows


# ---- loading --------------------------------------------------------------

class Sample:
    __slots__ = ("path", "cls", "label", "split")

    def __init__(self, path, cls, split_):
        self.path, self.cls, self.split = path, cls, split_
        self.label = CLASSES.index(cls)


def load_index(root, seed=DEFAULT_SEED):
    """The samples of a data folder: a labels.csv written by generate(), or
    else any folder holding NEU-CLS images (flat, or one folder per class,
    as the Kaggle copy has them) whose file names start with the class name
    or its NEU-CLS code. A real set is split by split(seed)."""
    csv_path = os.path.join(root, "labels.csv")
    if os.path.exists(csv_path):
        with open(csv_path, newline="") as f:
            return [Sample(os.path.join(root, r["file"]), r["class"],
                           r["split"]) for r in csv.DictReader(f)]
    files_by_class, paths = {}, {}
    for d, _, names in os.walk(root):
        for name in names:
            if not name.lower().endswith(IMAGE_EXTS):
                continue
            cls = class_of(name) or class_of(os.path.basename(d) + "_0")
            if cls is None:
                continue
            rel = os.path.relpath(os.path.join(d, name), root)
            files_by_class.setdefault(cls, []).append(rel)
            paths[rel] = cls
    if not paths:
        raise FileNotFoundError(f"{root}: no labels.csv and no NEU-CLS images")
    sp = split(files_by_class, seed)
    return [Sample(os.path.join(root, rel), paths[rel], sp[rel])
            for rel in sorted(paths)]


def load_tensor(samples, size=SIZE_PX):
    """(images uint8 [N, H, W], labels int64 [N]); images of another size
    are resized (bilinear) to size x size."""
    imgs = np.empty((len(samples), size, size), np.uint8)
    for i, s in enumerate(samples):
        img = read_gray(s.path)
        if img.shape != (size, size):
            from PIL import Image
            img = np.asarray(Image.fromarray(img).resize((size, size),
                                                         Image.BILINEAR))
        imgs[i] = img
    return imgs, np.array([s.label for s in samples], np.int64)


def to_model_input(imgs_u8):
    """EdgeDI's preprocessing (runtime/preprocess.h): uint8 -> x / 255 in
    float32, gray replicated to three channels; no mean, no std."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(imgs_u8)).to(torch.float32)
    x = x / 255.0
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Writes the synthetic NEU-CLS-like set.")
    ap.add_argument("--out", default="out/neu-synth")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--per-class", type=int, default=PER_CLASS)
    ap.add_argument("--montage", metavar="PNG",
                    help="also write a montage (6 rows x 8 images)")
    a = ap.parse_args(argv)
    t0 = time.time()
    rows = generate(a.out, a.seed, a.per_class)
    print(f"dataset.py: {len(rows)} images in {a.out} "
          f"({time.time() - t0:.0f} s)")
    if a.montage:
        from PIL import Image
        cols = 8
        m = np.zeros((len(CLASSES) * SIZE_PX, cols * SIZE_PX), np.uint8)
        for label, cls in enumerate(CLASSES):
            for j in range(cols):
                m[label * SIZE_PX:(label + 1) * SIZE_PX,
                  j * SIZE_PX:(j + 1) * SIZE_PX] = read_pgm(
                      os.path.join(a.out, "images", f"{cls}_{j + 1}.pgm"))
        Image.fromarray(m).resize((cols * 100, len(CLASSES) * 100)).save(
            a.montage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
