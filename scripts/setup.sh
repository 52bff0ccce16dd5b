#!/usr/bin/env bash
# setup.sh — installs every Debian package EdgeDI needs, and only the missing
# ones: safe to run any number of times (a second run installs nothing).
# Debian 12, as root (or with sudo available).
#
#   scripts/setup.sh           what building and testing need
#   scripts/setup.sh --bench   also what scripts/bench.sh needs: Node.js and
#                              npm, gnuplot-nox, and ONNX Runtime (npm ci in
#                              benchmarks/ort from its lock file, when its
#                              node_modules is missing)
#   scripts/setup.sh --train   also what tools/train/ needs (PyTorch, ONNX,
#                              NumPy, Pillow, OpenBLAS: about 1 GB; CI's
#                              tests never need them, docs/training.md)
# The flags combine.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=0
TRAIN=0
for arg in "$@"; do
  case "$arg" in
    --bench) BENCH=1 ;;
    --train) TRAIN=1 ;;
    *) echo "usage: scripts/setup.sh [--bench] [--train]" >&2; exit 2 ;;
  esac
done

PACKAGES=(
  bazel-bootstrap          # Bazel 4.2.3 (pulls its JDK)
  build-essential
  clang                    # libFuzzer harnesses
  libclang-rt-14-dev       # sanitizer runtimes for clang
  pkg-config
  libgrpc-dev              # gRPC C core 1.51
  protobuf-c-compiler      # protoc-c
  libprotobuf-c-dev
  libsqlite3-dev
  sqlite3                  # admin inspection of the profile database
  libxnnpack-dev
  libpthreadpool-dev       # xnnpack.h includes pthreadpool.h
  libcpuinfo-dev
  libcmocka-dev
  libopenblas-openmp-dev   # sgemm for wide convolutions; OpenMP build:
                           # no threads until asked for (xexec's `threads`)
  libonnx-dev              # ships onnx/onnx.proto
  libstb-dev               # stb_image: the image files `edgedi infer` reads
)

# Only for benchmarks: CI's tests never need them.
BENCH_PACKAGES=(
  gnuplot-nox              # RESULTS.md plots
)
[ "$BENCH" -eq 1 ] && PACKAGES+=("${BENCH_PACKAGES[@]}")

# Only for tools/train/ (training, evaluation in PyTorch, the importer's
# test files); run with Debian's /usr/bin/python3.
TRAIN_PACKAGES=(
  python3-torch            # 1.13, CPU only
  python3-onnx             # 1.12: onnx.proto, checker, numpy_helper
  python3-numpy
  python3-pil              # real NEU-CLS images (BMP/JPG), resizing
  libopenblas0-openmp      # else torch's BLAS falls back to the reference one
)
[ "$TRAIN" -eq 1 ] && PACKAGES+=("${TRAIN_PACKAGES[@]}")
# node may come from elsewhere than Debian (it bundles npm then): ask for
# Debian's only when there is none.
if [ "$BENCH" -eq 1 ]; then
  command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
  command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
fi

# ONNX Runtime for //benchmarks:vs_ort, pinned by benchmarks/ort/package-lock.json.
# The CPU build ships inside the package; its install script would fetch a
# CUDA build from outside the registry, which we skip.
npm_ci() {
  [ "$BENCH" -eq 1 ] || return 0
  [ -d benchmarks/ort/node_modules/onnxruntime-node ] && return 0
  echo "setup: npm ci in benchmarks/ort"
  (cd benchmarks/ort && ONNXRUNTIME_NODE_INSTALL_CUDA=skip \
     npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  npm_ci
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_ci
echo "setup: done"
