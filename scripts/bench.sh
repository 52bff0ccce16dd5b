#!/usr/bin/env bash
# bench.sh — runs EdgeDI's comparisons and rewrites benchmarks/RESULTS.md
# with their tables and PNG plots (gnuplot).
#
#   scripts/bench.sh           everything (about an hour on 2 cores)
#   scripts/bench.sh --quick   a subset, about 10 minutes on 2 cores
#   scripts/bench.sh --replot  only the plots and RESULTS.md, from the last run
#   scripts/bench.sh --base    only base_boards and base_core (below), about 6
#                              minutes, then RESULTS.md from them and the last run
#
# Runs, in order: vs_ort (EdgeDI vs ONNX Runtime, one device), throughput
# (concurrent clients, agent memory), cluster (sweeps over devices,
# heterogeneity, link and round trip), planners (the four planners' solve
# times and predictions, and their measured latencies on the device sweep:
# cluster with all four named), recovery (a board killed mid-request,
# per loss policy), strip_cost (what cutting a model into strips costs a
# core, with no cluster around it), base_boards and base_core (the demo's
# cluster with the paper's planners, boards at their own speed and at 0.1
# and 0.15 of this core). JSON lines go to benchmarks/results/*.jsonl,
# plots to benchmarks/results/*.png, and RESULTS.md is regenerated from
# them. Extra environment: PLANNERS=p1,p2 (cluster --planners; default the
# scheduler's), BAZEL_OUTPUT_BASE (default /root/.cache/bazel_bench).
# The load of the machine is recorded before and after each benchmark:
# on a shared machine the figures are only as good as it was quiet.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 REPLOT=0 BASE_ONLY=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  --replot) REPLOT=1 ;;
  --base) BASE_ONLY=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--quick | --replot | --base]" >&2; exit 2 ;;
esac
OUT=benchmarks/results
OUTPUT_BASE=${BAZEL_OUTPUT_BASE:-/root/.cache/bazel_bench}
mkdir -p "$OUT"

if [ "$REPLOT" -eq 0 ]; then
bash scripts/setup.sh --bench
BAZEL=(nice -n 10 bazel --output_base="$OUTPUT_BASE")
TARGETS=(//benchmarks:vs_ort //benchmarks:throughput //benchmarks:cluster //benchmarks:planners
  //benchmarks:recovery //benchmarks:strip_cost)
"${BAZEL[@]}" build -c opt --symlink_prefix=/ "${TARGETS[@]}"
BIN=$("${BAZEL[@]}" info -c opt bazel-bin 2>/dev/null)/benchmarks
ALL_PLANNERS=exact,heuristic,proportional,equal

load() { cut -d' ' -f1-3 /proc/loadavg; }
if [ "$BASE_ONLY" -eq 1 ]; then
  # The other runs' files stay; so do their loads, and RESULTS.md keeps
  # dating them by the full run (loads.md's time, restored below).
  STAMP=$(stat -c %Y "$OUT/loads.md" 2>/dev/null || date +%s)
  sed -i '/^| base_/d' "$OUT/loads.md" 2>/dev/null || true
else
  echo "$QUICK" >"$OUT/quick"
  : >"$OUT/loads.md"
fi
run() { # name, command...: JSON lines to $OUT/name.jsonl, the log beside it
  local name=$1
  shift
  local before
  before=$(load)
  echo "bench: $name (load $before)"
  local t0=$SECONDS
  if "$@" --json >"$OUT/$name.jsonl" 2>"$OUT/$name.log"; then :; else
    echo "bench: $name exited non-zero (see $OUT/$name.log)"
  fi
  echo "| $name | $before | $(load) | $((SECONDS - t0)) s |" >>"$OUT/loads.md"
}

# Scratch: ONNX exports (vgg16: 0.5 GB), databases, logs of the children.
WORK=$(mktemp -d /tmp/edgedi-bench-XXXXXX)
trap 'rm -f "$WORK"/vs_ort/*.onnx "$WORK"/vs_ort/*.f32' EXIT
echo "bench: databases and logs in $WORK"

PLANNER_FLAG=()
[ -n "${PLANNERS:-}" ] && PLANNER_FLAG=(--planners "$PLANNERS")
if [ "$BASE_ONLY" -eq 0 ]; then
if [ "$QUICK" -eq 1 ]; then
  run vs_ort "$BIN/vs_ort" --threads 1,2 --rounds 5 --dir "$WORK/vs_ort"
  run throughput "$BIN/throughput" --dir "$WORK/throughput" --per-client 8 --rss-models vgg16c,resnet18c,vgg16,resnet18
  run cluster "$BIN/cluster" --dir "$WORK/cluster" --quick --gantt "$OUT/gantt.tsv" "${PLANNER_FLAG[@]}"
else
  run vs_ort "$BIN/vs_ort" --threads 1,2 --threads-originals 1,2 --rounds 5 \
    --dir "$WORK/vs_ort"
  run throughput "$BIN/throughput" --dir "$WORK/throughput"
  run cluster "$BIN/cluster" --dir "$WORK/cluster" --models vgg16c,resnet18c --gantt "$OUT/gantt.tsv" \
    "${PLANNER_FLAG[@]}"
fi
if [ "$QUICK" -eq 1 ]; then
  run planners "$BIN/planners" --reps 7 --max-devices 16
  run planners_cluster "$BIN/cluster" --dir "$WORK/planners" --quick --sweeps devices \
    --base-models none --planners "$ALL_PLANNERS"
else
  run planners "$BIN/planners"
  run planners_cluster "$BIN/cluster" --dir "$WORK/planners" --sweeps devices,hetero,link,rtt \
    --models vgg16c,resnet18c --planners "$ALL_PLANNERS"
fi
if [ "$QUICK" -eq 1 ]; then
  run recovery "$BIN/recovery" --dir "$WORK/recovery" --models vgg16c --requests 2 \
    --policies restart,stand-in
else
  run recovery "$BIN/recovery" --dir "$WORK/recovery"
fi
run strip_cost "$BIN/strip_cost" --models vgg16,vgg16c,resnet18c
fi # BASE_ONLY
# The demo's cluster (issue 5's base point), the paper's three planners
# taking turns: the boards at their own speed (cli/boards.h), then at 0.1
# and 0.15 of this core, as the sweeps above ran until stop 22.
run base_boards "$BIN/cluster" --dir "$WORK/base_boards" --sweeps base --models vgg16c \
  --base-models vgg16 --planners exact,heuristic,proportional
run base_core "$BIN/cluster" --dir "$WORK/base_core" --sweeps base --models vgg16c \
  --base-models vgg16 --planners exact,heuristic,proportional --core-speeds
[ "$BASE_ONLY" -eq 0 ] || touch -d "@$STAMP" "$OUT/loads.md"
fi # REPLOT

# ---- plots -------------------------------------------------------------------
# JSON lines to whitespace-separated columns (jq is not installed
# everywhere; these lines are flat, so sed does).
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }
cols() { # file, filter regex, fields...
  local file=$1 filter=$2
  shift 2
  grep -E "$filter" "$file" | while IFS= read -r line; do
    local row=()
    for f in "$@"; do row+=("$(printf '%s' "$line" | field "$f")"); done
    echo "${row[*]}"
  done
}

CL=$OUT/cluster.jsonl
# The device sweep of the first model (the base point adds the base-only ones).
FIRST=$(grep -m1 '"sweep":"devices"' "$CL" 2>/dev/null | field model || true)
cols "$CL" "\"sweep\":\"devices\",\"model\":\"$FIRST\"" devices speedup bound median_ms \
  predicted_ms model planner >"$OUT/devices.dat" || true
cols "$CL" '"bench":"cluster"' predicted_ms median_ms model >"$OUT/predicted.dat" || true

if command -v gnuplot >/dev/null && [ -s "$OUT/devices.dat" ]; then
  gnuplot <<EOF
set terminal pngcairo size 800,500 noenhanced
set output "$OUT/speedup.png"
set title "$FIRST: speedup over the slowest device vs devices (1 : 1.5, 100 Mbit/s, 1 ms; emulated)"
set xlabel "devices"; set ylabel "speedup"; set key left top; set grid
plot "$OUT/devices.dat" using 1:3 with linespoints lw 2 title "bound sum(speeds)/slowest", \
     "$OUT/devices.dat" using 1:2 with linespoints lw 2 title "measured"
EOF
fi
if command -v gnuplot >/dev/null && [ -s "$OUT/predicted.dat" ]; then
  gnuplot <<EOF
set terminal pngcairo size 700,600 noenhanced
set output "$OUT/predicted.png"
set title "Measured vs predicted latency (every cluster point)"
set xlabel "predicted ms"; set ylabel "measured ms (median)"; set grid; set key left top
set logscale xy
plot "$OUT/predicted.dat" using 1:2 with points pt 7 title "points", x with lines title "measured = predicted"
EOF
fi
if command -v gnuplot >/dev/null && [ -s "$OUT/gantt.tsv" ]; then
  awk -F'\t' '!/^#/ && $3=="compute" {print > "'"$OUT"'/gantt_compute.dat"}
              !/^#/ && $3=="transfer" {print > "'"$OUT"'/gantt_transfer.dat"}' "$OUT/gantt.tsv"
  touch "$OUT/gantt_transfer.dat" "$OUT/gantt_compute.dat"
  # Measured stretches (tile_spans) when the agents reported them, else
  # bars rebuilt from tile_history with their transfers (benchmarks/gantt.h).
  how="measured compute; gaps are waits"
  transfer=""
  if [ -s "$OUT/gantt_transfer.dat" ]; then
    how="rebuilt from tile_history"
    transfer="\"$OUT/gantt_transfer.dat\" using (\$4+\$5)/2:(int(substr(strcol(1),5,6))):(\$4):(\$5):(int(substr(strcol(1),5,6))-0.15):(int(substr(strcol(1),5,6))+0.15) with boxxyerror fs solid 0.4 lc rgb \"#e08020\" title \"transfer\", "
  fi
  last=$(awk -F'\t' '!/^#/ {d = substr($1, 5) + 0; if (d > m) m = d} END {print m + 0}' "$OUT/gantt.tsv")
  gnuplot <<EOF
set terminal pngcairo size 900,400 noenhanced
set output "$OUT/gantt.png"
set title "One request across the devices (base point; $how)"
set xlabel "ms since the request started"; set ylabel "device"; set grid x; set key below
set yrange [$last + 0.6:-0.6]; set ytics 0, 1, $last; set format y "dev-%g"
plot $transfer"$OUT/gantt_compute.dat" using (\$4+\$5)/2:(int(substr(strcol(1),5,6))):(\$4):(\$5):(int(substr(strcol(1),5,6))-0.3):(int(substr(strcol(1),5,6))+0.3):(\$2+1) with boxxyerror fs solid 0.7 lc variable title "compute (colour: segment)"
EOF
fi

bash benchmarks/results_md.sh "$OUT" >benchmarks/RESULTS.md
echo "bench: wrote benchmarks/RESULTS.md"
