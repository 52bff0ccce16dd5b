#!/usr/bin/env bash
# demo.sh — sets up a fresh Debian 12 machine, builds EdgeDI optimized and
# runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bazel build -c opt //cli:edgedi
exec bazel-bin/cli/edgedi demo "$@"
