#!/usr/bin/env bash
# prune_cli_test.sh — `edgedi eval` and `edgedi prune`, the real binary, on
# a seeded zoo model (resnet18c at 40x40) and a six-image labelled folder
# written here: accuracy and the comparison against a logits file, pruning
# to a floor of 0 (every step kept) and the written model read back by
# eval, and the errors a user gets for bad flags and files.
set -euo pipefail

E="$TEST_SRCDIR/edgedi/cli/edgedi"
T="$TEST_TMPDIR"
D="$T/data"
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$D/images"
echo "file,class,label,split" > "$D/labels.csv"
for k in 0 1 2 3 4 5; do
  { printf 'P5\n40 40\n255\n'; head -c 1600 /dev/urandom; } > "$D/images/i$k.pgm"
  echo "images/i$k.pgm,c$k,$k,heldout" >> "$D/labels.csv"
done

"$E" export resnet18c "$T/tiny.onnx" --height 40 --width 40 > /dev/null || fail "export"

"$E" eval "$T/tiny.onnx" --data "$D" --logits-out "$T/logits.f32" > "$T/eval.txt" \
  || fail "eval: $(cat "$T/eval.txt")"
grep -q '^top-1 .*(./6)' "$T/eval.txt" || fail "eval: no accuracy: $(cat "$T/eval.txt")"
grep -q 'parameters' "$T/eval.txt" || fail "eval: no parameters"
grep -q 'ms median per image' "$T/eval.txt" || fail "eval: no latency"
[ "$(stat -c %s "$T/logits.f32")" -eq $((6 * 6 * 4)) ] || fail "eval: logits size"
"$E" eval "$T/tiny.onnx" --data "$D" --compare "$T/logits.f32" > "$T/cmp.txt" \
  || fail "compare with itself: $(cat "$T/cmp.txt")"
grep -q '100.00 % equal predictions (6/6), max logit difference 0.00e+00.*PASS' "$T/cmp.txt" \
  || fail "compare: $(cat "$T/cmp.txt")"

"$E" prune "$T/tiny.onnx" --data "$D" --floor 0 --out "$T/pruned.onnx" \
  --max-evals 30 > "$T/prune.txt" || fail "prune: $(cat "$T/prune.txt")"
grep -q 'kept' "$T/prune.txt" || fail "prune: no step kept: $(cat "$T/prune.txt")"
grep -q '^after ' "$T/prune.txt" || fail "prune: no summary"
grep -q 'stopped at --max-evals' "$T/prune.txt" || fail "prune: max-evals"
grep -q 'as measured while pruning' "$T/prune.txt" || fail "prune: read back"
"$E" eval "$T/pruned.onnx" --data "$D" > "$T/eval2.txt" || fail "eval of the pruned model"
p0=$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' "$T/eval.txt")
p1=$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' "$T/eval2.txt")
[ "$p1" -lt "$p0" ] || fail "pruned model has $p1 parameters, the original $p0"

# The folder through a 2-agent local cluster, every request split over
# both (planner equal): the same predictions and logits as this device.
"$E" cluster --agents 2 --port 0 --db "$T/cluster.db" --logs "$T" \
  --run "'$E' eval '$T/tiny.onnx' --data '$D' --scheduler \$EDGEDI_SCHEDULER --planner equal" \
  > "$T/cluster.txt" 2>&1 || fail "eval through a cluster: $(cat "$T/cluster.txt")"
grep -q '6 of 6 requests split over 2 or more devices' "$T/cluster.txt" \
  || fail "cluster: requests not split: $(cat "$T/cluster.txt")"
grep -q 'vs this device: 100.00 % equal predictions (6/6).*PASS' "$T/cluster.txt" \
  || fail "cluster: $(cat "$T/cluster.txt")"

# expect STATUS PATTERN COMMAND...: exit status and a message on stderr.
expect() {
  local want=$1 pat=$2; shift 2
  local got=0
  "$@" > "$T/out.txt" 2> "$T/err.txt" || got=$?
  [ "$got" -eq "$want" ] || fail "$*: exit $got, expected $want: $(cat "$T/err.txt")"
  grep -q -- "$pat" "$T/err.txt" || fail "$*: stderr lacks '$pat': $(cat "$T/err.txt")"
}
expect 2 '--data DIR is required' "$E" eval "$T/tiny.onnx"
expect 2 'MODEL.onnx is required' "$E" eval --data "$D"
expect 2 '--name and --planner go with --scheduler' "$E" eval "$T/tiny.onnx" --data "$D" --planner equal
expect 2 '--compare-order needs --compare' "$E" eval "$T/tiny.onnx" --data "$D" --compare-order x.csv
expect 2 '--tol needs a number' "$E" eval "$T/tiny.onnx" --data "$D" --tol abc
expect 1 'cannot open /nonexistent/labels.csv' "$E" eval "$T/tiny.onnx" --data /nonexistent
expect 1 "unknown split 'dev'" "$E" eval "$T/tiny.onnx" --data "$D" --split dev
head -c 20 /dev/zero > "$T/short.f32"
expect 1 'holds 5 float32 values, 36 expected' "$E" eval "$T/tiny.onnx" --data "$D" --compare "$T/short.f32"
expect 2 'floor-drop D is required' "$E" prune "$T/tiny.onnx" --data "$D" --out "$T/p.onnx"
expect 2 '--out PRUNED.onnx is required' "$E" prune "$T/tiny.onnx" --data "$D" --floor 0.5
expect 2 '--floor needs a number in \[0, 1\]' "$E" prune "$T/tiny.onnx" --data "$D" --floor 1.5 --out "$T/p.onnx"
expect 2 '--step must be above 0' "$E" prune "$T/tiny.onnx" --data "$D" --floor 0 --step 0 --out "$T/p.onnx"
expect 2 'not both' "$E" prune "$T/tiny.onnx" --data "$D" --floor 0 --floor-drop 0.01 --out "$T/p.onnx"
expect 2 'unknown flag: --fast' "$E" prune "$T/tiny.onnx" --fast
acc=$(sed -n 's/^top-1 *\([0-9.]*\).*/\1/p' "$T/eval.txt")
if [ "$acc" != "1.0000" ]; then
  expect 1 'already below the floor' "$E" prune "$T/tiny.onnx" --data "$D" --floor 1 --out "$T/p.onnx"
fi
expect 1 'tiny.onnx.missing' "$E" prune "$T/tiny.onnx.missing" --data "$D" --floor 0 --out "$T/p.onnx"
[ ! -e "$T/p.onnx" ] || fail "a failed prune wrote its output"
echo PASS
