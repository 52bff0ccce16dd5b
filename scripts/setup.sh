#!/usr/bin/env bash
# setup.sh — installs every Debian package EdgeDI needs, and only the missing
# ones: safe to run any number of times (a second run installs nothing).
# Debian 12, as root (or with sudo available).
set -euo pipefail

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
  libonnx-dev              # ships onnx/onnx.proto
  libstb-dev               # stb_image: the image files `edgedi infer` reads
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
