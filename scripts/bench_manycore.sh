#!/usr/bin/env bash
# bench_manycore.sh — the cluster benchmark's device sweep on real cores:
# one agent pinned per core (taskset), no --speed, for a machine with 16 or
# more cores; under 8 minutes there.
#
#   scripts/bench_manycore.sh --pack DIR   here: build -c opt and gather into
#                                          DIR the programs, every shared
#                                          library they load (ldd) and the
#                                          dynamic loader, and this script
#   DIR/bench_manycore.sh [--max-devices N] [--models LIST]
#                                          there: run from DIR with only what
#                                          it carries; results in DIR/results
#   scripts/bench_manycore.sh              both, here (a many-core host)
#
# To put the figures in RESULTS.md: copy DIR/results/manycore.jsonl and
# manycore.machine into benchmarks/results/, then scripts/bench.sh --replot.
#
# Core 0 holds the benchmark program and the scheduler; agent dev-K runs on
# core K+1, so N devices need N+1 cores (default N = cores - 1, at most 16).
# Each program is started through the carried loader with the carried
# libraries, so the other machine needs neither EdgeDI's packages nor the
# same distribution; it needs taskset (util-linux) and bash.
set -euo pipefail

pack() {
  local dir=$1 root
  root=$(cd "$(dirname "$0")/.." && pwd)
  local base=${BAZEL_OUTPUT_BASE:-/root/.cache/bazel_bench}
  (cd "$root" && nice -n 10 bazel --output_base="$base" build -c opt --symlink_prefix=/ \
     //benchmarks:cluster //runtime:edgedi-agent //scheduler:edgedi-scheduler)
  local bin
  bin=$(cd "$root" && bazel --output_base="$base" info -c opt bazel-bin 2>/dev/null)
  mkdir -p "$dir/bin" "$dir/lib"
  cp -f "$bin/benchmarks/cluster" "$bin/runtime/edgedi-agent" "$bin/scheduler/edgedi-scheduler" \
    "$dir/bin/"
  for b in "$dir"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}' | while read -r lib; do
      cp -fL "$lib" "$dir/lib/"
    done
  done
  cp -f "$0" "$dir/bench_manycore.sh"
  chmod +x "$dir/bench_manycore.sh"
  # The pinned wrappers localcluster starts instead of the programs.
  cat >"$dir/bin/agent-pinned" <<'EOF'
#!/usr/bin/env bash
# dev-K on core K+1 (core 0: scheduler and benchmark).
here=$(cd "$(dirname "$0")/.." && pwd)
core=1 prev=
for a in "$@"; do [ "$prev" = --name ] && core=$(( ${a#dev-} + 1 )); prev=$a; done
exec taskset -c "$core" "$here"/lib/ld-linux-x86-64.so.2 --library-path "$here/lib" \
  "$here/bin/edgedi-agent" "$@"
EOF
  cat >"$dir/bin/scheduler-pinned" <<'EOF'
#!/usr/bin/env bash
here=$(cd "$(dirname "$0")/.." && pwd)
exec taskset -c 0 "$here"/lib/ld-linux-x86-64.so.2 --library-path "$here/lib" \
  "$here/bin/edgedi-scheduler" "$@"
EOF
  chmod +x "$dir/bin/agent-pinned" "$dir/bin/scheduler-pinned"
  echo "bench_manycore: packed $(du -sh "$dir" | cut -f1) into $dir"
}

run_here() {
  local dir max_dev=0 models=vgg16c,resnet18c
  dir=$(cd "$(dirname "$0")" && pwd)
  while [ $# -gt 0 ]; do
    case $1 in
      --max-devices) max_dev=$2; shift 2 ;;
      --models) models=$2; shift 2 ;;
      *) echo "bench_manycore: unknown flag $1" >&2; exit 2 ;;
    esac
  done
  local cores
  cores=$(nproc)
  [ "$max_dev" -gt 0 ] || max_dev=$(( cores - 1 < 16 ? cores - 1 : 16 ))
  [ "$max_dev" -ge 1 ] || { echo "bench_manycore: needs 2 cores at least" >&2; exit 1; }
  mkdir -p "$dir/results"
  {
    echo "$cores cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$dir/results/manycore.machine"
  echo "bench_manycore: $(cat "$dir/results/manycore.machine"); devices 1..$max_dev"
  taskset -c 0 "$dir"/lib/ld-linux-x86-64.so.2 --library-path "$dir/lib" "$dir/bin/cluster" \
    --real-cores --max-devices "$max_dev" --models "$models" --base-models none \
    --scheduler-bin "$dir/bin/scheduler-pinned" --agent-bin "$dir/bin/agent-pinned" \
    --dir "$dir/results/work" --json | tee "$dir/results/manycore.jsonl"
}

case "${1:-}" in
  --pack) pack "$2" ;;
  "")
    tmp=$(mktemp -d /tmp/edgedi-manycore-XXXXXX)
    pack "$tmp"
    "$tmp/bench_manycore.sh" --run-here
    ;;
  --run-here) shift; run_here "$@" ;;
  *) run_here "$@" ;;
esac
