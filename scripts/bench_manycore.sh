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
#   DIR/bench_manycore.sh --boards         there: the demo cluster's base
#                                          point (four boards at their own
#                                          speed, cli/boards.h, each agent on
#                                          a core of its own) and the device
#                                          sweep at the boards' speed, side by
#                                          side on disjoint cores (14 cores;
#                                          4-5 minutes, vgg16 most of it)
#   DIR/bench_manycore.sh --boards-base    there: the base point alone, three
#                                          copies side by side (vgg16c on
#                                          cores 0-4, vgg16 on 5-9 and again
#                                          on 10-14; about 4 minutes)
#   DIR/bench_manycore.sh --strip-cost     there: //benchmarks:strip_cost on
#                                          core 1 (vgg16, vgg16c; 2 minutes):
#                                          what an emulated board's sleep
#                                          between bursts costs on that host
#   scripts/bench_manycore.sh              both, here (a many-core host)
#
# To put the figures in RESULTS.md: copy DIR/results/manycore.jsonl and
# manycore.machine into benchmarks/results/ (--boards: append
# DIR/results/boards_device.jsonl and boards.machine to the files of those
# names there), then scripts/bench.sh --replot.
#
# Core 0 holds the benchmark program and the scheduler; agent dev-K runs on
# core K+1, so N devices need N+1 cores (default N = cores - 1, at most 16).
# EDGEDI_CORE_BASE=C shifts all of them up by C (two runs side by side).
# Each program is started through the carried loader with the carried
# libraries, so the other machine needs neither EdgeDI's packages nor the
# same distribution; it needs taskset (util-linux) and bash.
set -euo pipefail

pack() {
  local dir=$1 root
  root=$(cd "$(dirname "$0")/.." && pwd)
  local base=${BAZEL_OUTPUT_BASE:-/root/.cache/bazel_bench}
  (cd "$root" && nice -n 10 bazel --output_base="$base" build -c opt --symlink_prefix=/ \
     //benchmarks:cluster //benchmarks:strip_cost //runtime:edgedi-agent \
     //scheduler:edgedi-scheduler)
  local bin
  bin=$(cd "$root" && bazel --output_base="$base" info -c opt bazel-bin 2>/dev/null)
  mkdir -p "$dir/bin" "$dir/lib"
  cp -f "$bin/benchmarks/cluster" "$bin/benchmarks/strip_cost" "$bin/runtime/edgedi-agent" \
    "$bin/scheduler/edgedi-scheduler" "$dir/bin/"
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
# dev-K on core K+1 (core 0: scheduler and benchmark); EDGEDI_AGENT_FLAGS:
# more flags for every agent (an A/B of an agent option).
here=$(cd "$(dirname "$0")/.." && pwd)
base=${EDGEDI_CORE_BASE:-0} core=1 prev=
for a in "$@"; do [ "$prev" = --name ] && core=$(( ${a#dev-} + 1 )); prev=$a; done
core=$(( (core + base) % $(nproc) ))  # wraps only on a small host (a trial run)
exec taskset -c "$core" "$here"/lib/ld-linux-x86-64.so.2 --library-path "$here/lib" \
  "$here/bin/edgedi-agent" "$@" ${EDGEDI_AGENT_FLAGS:-}
EOF
  cat >"$dir/bin/scheduler-pinned" <<'EOF'
#!/usr/bin/env bash
here=$(cd "$(dirname "$0")/.." && pwd)
exec taskset -c "$(( ${EDGEDI_CORE_BASE:-0} % $(nproc) ))" "$here"/lib/ld-linux-x86-64.so.2 --library-path "$here/lib" \
  "$here/bin/edgedi-scheduler" "$@"
EOF
  chmod +x "$dir/bin/agent-pinned" "$dir/bin/scheduler-pinned"
  echo "bench_manycore: packed $(du -sh "$dir" | cut -f1) into $dir"
}

# One line: cores, CPU model, kernel, time, load (RESULTS.md quotes it).
describe_machine() {
  echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
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
  describe_machine >"$dir/results/manycore.machine"
  echo "bench_manycore: $(cat "$dir/results/manycore.machine"); devices 1..$max_dev"
  taskset -c 0 "$dir"/lib/ld-linux-x86-64.so.2 --library-path "$dir/lib" "$dir/bin/cluster" \
    --real-cores --max-devices "$max_dev" --models "$models" --base-models none \
    --scheduler-bin "$dir/bin/scheduler-pinned" --agent-bin "$dir/bin/agent-pinned" \
    --dir "$dir/results/work" --json | tee "$dir/results/manycore.jsonl"
}

# What the --boards runs share (set in the caller's locals, bash's dynamic
# scope): the pack's directory, requests per point (1 in a trial of the
# script on a small host, EDGEDI_TRIAL), the machine line and its time, and
# the benchmark's command line.
boards_prepare() { # flag, cores it needs
  dir=$(cd "$(dirname "$0")" && pwd)
  [ "$(nproc)" -ge "$2" ] || [ -n "${EDGEDI_TRIAL:-}" ] ||
    { echo "bench_manycore: $1 needs $2 cores" >&2; exit 1; }
  n=20
  [ -z "${EDGEDI_TRIAL:-}" ] || n=1
  mkdir -p "$dir/results"
  describe_machine >"$dir/results/boards.machine"
  t=$(grep -o '[0-9][0-9]:[0-9][0-9] UTC' "$dir/results/boards.machine" | cut -c1-5)
  run=("$dir"/lib/ld-linux-x86-64.so.2 --library-path "$dir/lib" "$dir/bin/cluster"
       --scheduler-bin "$dir/bin/scheduler-pinned" --agent-bin "$dir/bin/agent-pinned" --json)
}

# The demo cluster at the boards' own speed on cores of their own: the base
# point (vgg16c and vgg16, three planners taking turns) on cores 0-4, the
# device sweep (1, 2, 4, 8 boards) on cores 5-13, at once: an emulated board
# computes for a fortieth of its time, so the two hardly meet.
run_boards() {
  local dir n t run
  boards_prepare --boards 14
  EDGEDI_CORE_BASE=0 taskset -c 0 "${run[@]}" --sweeps base --models vgg16c --base-models vgg16 \
    --planners exact,heuristic,proportional --requests "$n" --dir "$dir/results/work_base" \
    >"$dir/results/boards_base.jsonl" 2>"$dir/results/boards_base.log" &
  local base_pid=$!
  EDGEDI_CORE_BASE=5 taskset -c $(( 5 % $(nproc) )) "${run[@]}" --sweeps devices --quick \
    --models vgg16c,resnet18c --base-models none --requests "$n" --dir "$dir/results/work_devices" \
    >"$dir/results/boards_devices.jsonl" 2>"$dir/results/boards_devices.log" &
  local dev_pid=$! rc=0
  wait "$base_pid" || rc=$?
  wait "$dev_pid" || rc=$?
  # One file for RESULTS.md, each line tagged with the run's start.
  grep -h '^{' "$dir/results/boards_base.jsonl" "$dir/results/boards_devices.jsonl" |
    sed "s/^{/{\"run\":\"$t\",/" | tee "$dir/results/boards_device.jsonl"
  return "$rc"
}

# The base point alone, one model per copy, three copies on disjoint cores:
# two samples of vgg16 (the slower model) in the time of one.
run_boards_base() {
  local dir n t run
  boards_prepare --boards-base 15
  local models=(vgg16c vgg16 vgg16) pids=() i rc=0
  for i in 0 1 2; do
    local c=$(( i * 5 ))
    EDGEDI_CORE_BASE=$c taskset -c $(( c % $(nproc) )) "${run[@]}" --sweeps base \
      --models "${models[$i]}" --base-models none --planners exact,heuristic,proportional \
      --requests "$n" --dir "$dir/results/work_base$i" \
      >"$dir/results/boards_base$i.jsonl" 2>"$dir/results/boards_base$i.log" &
    pids+=($!)
  done
  for i in 0 1 2; do wait "${pids[$i]}" || rc=$?; done
  # Each copy's lines tagged with the run's start and its first core.
  : >"$dir/results/boards_device.jsonl"
  for i in 0 1 2; do
    grep -h '^{' "$dir/results/boards_base$i.jsonl" |
      sed "s/^{/{\"run\":\"$t c$(( i * 5 ))\",/" | tee -a "$dir/results/boards_device.jsonl"
  done
  return "$rc"
}

# strip_cost on a core of its own: the strips' CPU against the model whole,
# and after sleeping (or spinning) 30 times as long as each, as a board does.
run_strip_cost() {
  local dir
  dir=$(cd "$(dirname "$0")" && pwd)
  mkdir -p "$dir/results"
  describe_machine >"$dir/results/strip_cost_device.machine"
  taskset -c $(( 1 % $(nproc) )) "$dir"/lib/ld-linux-x86-64.so.2 --library-path "$dir/lib" \
    "$dir/bin/strip_cost" --models vgg16,vgg16c --runs 3 --json |
    tee "$dir/results/strip_cost_device.jsonl"
}

case "${1:-}" in
  --strip-cost) run_strip_cost ;;
  --boards) run_boards ;;
  --boards-base) run_boards_base ;;
  --pack) pack "$2" ;;
  "")
    tmp=$(mktemp -d /tmp/edgedi-manycore-XXXXXX)
    pack "$tmp"
    "$tmp/bench_manycore.sh" --run-here
    ;;
  --run-here) shift; run_here "$@" ;;
  *) run_here "$@" ;;
esac
