#!/usr/bin/env bash
# prune_models_test.sh — the shipped models (models/) classify the shipped
# sample images (models/samples/, one held-out image per class): the
# trained resnet18c gets all six right with the logits PyTorch computed
# (expected.csv, 6 significant digits: within 1e-4 of the largest logit),
# and its L1-pruned version, smaller, gets them right too.
set -euo pipefail

E="$TEST_SRCDIR/edgedi/cli/edgedi"
M="$TEST_SRCDIR/edgedi/models"
T="$TEST_TMPDIR"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$E" eval "$M/resnet18c_neu.onnx" --data "$M/samples" --logits-out "$T/l.f32" > "$T/a.txt" \
  || fail "eval: $(cat "$T/a.txt")"
grep -q '^top-1 *1.0000 (6/6)' "$T/a.txt" || fail "shipped model: $(cat "$T/a.txt")"

# expected.csv's logits (columns 4..9) against ours, relative to the row's
# largest |logit|.
od -An -v -t f4 -w24 "$T/l.f32" > "$T/ours.txt"
tail -n +2 "$M/samples/expected.csv" | cut -d, -f4- | tr ',' ' ' > "$T/want.txt"
paste -d' ' "$T/want.txt" "$T/ours.txt" | awk '
  { m = 0; d = 0
    for (i = 1; i <= 6; i++) { a = $i < 0 ? -$i : $i; if (a > m) m = a
      x = $i - $(i + 6); if (x < 0) x = -x; if (x > d) d = x }
    if (d > 1e-4 * m) { print "row " NR ": off by " d " of " m; bad = 1 } }
  END { exit bad }' || fail "logits differ from expected.csv"

"$E" eval "$M/resnet18c_neu_pruned.onnx" --data "$M/samples" > "$T/p.txt" \
  || fail "eval pruned: $(cat "$T/p.txt")"
grep -q '^top-1 *1.0000 (6/6)' "$T/p.txt" || fail "pruned model: $(cat "$T/p.txt")"
p0=$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' "$T/a.txt")
p1=$(sed -n 's/.*: \([0-9]*\) parameters.*/\1/p' "$T/p.txt")
[ "$p1" -lt "$p0" ] || fail "pruned model has $p1 parameters, the shipped one $p0"

"$E" run "$M/resnet18c_neu.onnx" --input "$M/samples/scratches_1.pgm" | grep -q '(scratches)' \
  || fail "run: scratches_1.pgm not classified as scratches"
echo PASS
