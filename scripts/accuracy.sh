#!/usr/bin/env bash
# accuracy.sh — reproduces docs/accuracy.md: the accuracy table of the
# shipped models on the held-out synthetic NEU-CLS set, measured by EdgeDI
# itself (`edgedi eval`: top-1, parameters, GFLOPs, median single-device
# latency, one thread, batch 1), then the exactness checks.
#
#   scripts/accuracy.sh              the table (about 20 s per model)
#   scripts/accuracy.sh --compare    + EdgeDI vs PyTorch on the 360 images
#                                    (PyTorch's logits from evaluate.py:
#                                    needs scripts/setup.sh --train; ~1 min)
#   scripts/accuracy.sh --cluster    + a 4-agent local cluster vs this device
#   scripts/accuracy.sh --prune      + the pruning run again, into out/prune
#                                    (~6 min; compare with models/)
#   scripts/accuracy.sh --all        all of them
#
# BAZEL may name another bazel command line (BAZEL="bazel --output_base=X").
# The synthetic set is generated into out/neu-synth when missing
# (tools/train/dataset.py, NumPy only, ~100 s). Models trained at a reduced
# resolution S (the R64 and R100 protocols of docs/accuracy.md:
# out/train/MODEL_rS.onnx, with the downscaled images evaluate.py
# --write-images put in out/neu-synth-S) get their rows too when present, as
# do models trained at 200x200 (out/train/MODEL_neu.onnx).
set -euo pipefail
cd "$(dirname "$0")/.."

COMPARE=0 CLUSTER=0 PRUNE=0
for arg in "$@"; do
  case "$arg" in
    --compare) COMPARE=1 ;;
    --cluster) CLUSTER=1 ;;
    --prune) PRUNE=1 ;;
    --all) COMPARE=1 CLUSTER=1 PRUNE=1 ;;
    *) echo "usage: scripts/accuracy.sh [--compare] [--cluster] [--prune] [--all]" >&2
       exit 2 ;;
  esac
done

BAZEL=${BAZEL:-bazel}
PY=/usr/bin/python3
DATA=out/neu-synth
SHIPPED=models/resnet18c_neu.onnx
PRUNED=models/resnet18c_neu_pruned.onnx

if [ ! -f "$DATA/labels.csv" ]; then
  echo "accuracy: generating $DATA" >&2
  nice -n 15 "$PY" tools/train/dataset.py --out "$DATA" >&2
fi
$BAZEL build -c opt --symlink_prefix=/ //cli:edgedi >&2
E="$($BAZEL info -c opt bazel-bin 2>/dev/null)/cli/edgedi"

# row NAME MODEL DATA: one table row from `edgedi eval`.
row() {
  local out
  out=$(nice -n 10 "$E" eval "$2" --data "$3")
  local params gflop top1 n ms
  params=$(sed -n 's/^model .*: \([0-9]*\) parameters.*/\1/p' <<<"$out")
  gflop=$(sed -n 's/^model .* parameters, \([0-9.]*\) GFLOP.*/\1/p' <<<"$out")
  top1=$(sed -n 's/^top-1 *\([0-9.]*\) (\(.*\))/\1 (\2)/p' <<<"$out")
  ms=$(sed -n 's/^latency *\([0-9.]*\) ms.*/\1/p' <<<"$out")
  n=$(sed -n 's/^data .*: \([0-9]*\) images \([0-9x]*\)x1$/\2/p' <<<"$out")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$n" "$top1" "$params" "$gflop" "$ms"
}

echo "| model | input | top-1 held-out | parameters | GFLOP | latency ms (1 thread) |"
echo "|---|---|---|---|---|---|"
row "resnet18c (r=8), trained" "$SHIPPED" "$DATA"
[ -f "$PRUNED" ] && row "resnet18c, L1-pruned (floor -1 point)" "$PRUNED" "$DATA"
# Models the tools trained at the full 200x200 (docs/accuracy.md's commands
# write out/train/MODEL_neu.onnx).
for f in out/train/*_neu.onnx; do
  [ -f "$f" ] || continue
  row "$(basename "$f" .onnx), trained" "$f" "$DATA"
done
for f in out/train/*_r[0-9]*.onnx; do
  [ -f "$f" ] || continue
  size=${f##*_r}
  size=${size%.onnx}
  [ -f "out/neu-synth-$size/labels.csv" ] || continue
  row "$(basename "$f" .onnx) (R$size)" "$f" "out/neu-synth-$size"
done

if [ "$COMPARE" -eq 1 ]; then
  ref=out/eval/resnet18c
  if [ ! -f "$ref/logits.f32" ]; then
    OMP_NUM_THREADS=1 nice -n 15 "$PY" tools/train/evaluate.py --onnx "$SHIPPED" \
      --data "$DATA" --out "$ref" >&2
  fi
  echo
  nice -n 10 "$E" eval "$SHIPPED" --data "$DATA" --compare "$ref/logits.f32" \
    --compare-order "$ref/predictions.csv" | grep '^compare'
fi

if [ "$CLUSTER" -eq 1 ]; then
  db=$(mktemp -d)
  echo
  nice -n 10 "$E" cluster --agents 4 --port 0 --db "$db/edgedi.db" --logs "$db" \
    --run "'$E' eval '$SHIPPED' --data '$DATA' --scheduler \$EDGEDI_SCHEDULER --planner equal" \
    | grep -A1 '^cluster '
  rm -rf "$db"
fi

if [ "$PRUNE" -eq 1 ]; then
  mkdir -p out/prune
  echo
  nice -n 10 "$E" prune "$SHIPPED" --data "$DATA" --floor-drop 0.01 --multiple 8 --quiet \
    --out out/prune/resnet18c_neu_pruned.onnx
fi
