#!/usr/bin/env bash
# demo.sh — sets up a fresh Debian 12 machine, builds EdgeDI optimized and
# runs the main job: `edgedi demo`, one scheduler and four agents on
# loopback emulating two Raspberry Pi 3B+ and two Pi 4B behind 100 Mbit/s
# links, serving vgg16c and resnet18c (under a minute after the build).
# Extra arguments go to `edgedi demo` (`--help` lists them; `--local` runs
# the single-device demo instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bazel build -c opt //scheduler:edgedi-scheduler //runtime:edgedi-agent //cli:edgedi
exec bazel-bin/cli/edgedi demo "$@"
