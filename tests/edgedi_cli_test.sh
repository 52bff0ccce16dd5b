#!/usr/bin/env bash
# edgedi_cli_test.sh — the edgedi program end to end: `edgedi cluster`
# starts a scheduler and two agents (found next to edgedi, as from
# bazel-bin), runs a script of client commands against it, and stops
# them; then the database commands read what the requests left.
# Each client command must print its table, and a server error must print
# its gRPC status name and exit non-zero.
set -euo pipefail

E="$TEST_SRCDIR/edgedi/cli/edgedi"
T="$TEST_TMPDIR"
fail() { echo "FAIL: $*" >&2; exit 1; }

{ printf 'P5\n200 200\n255\n'; head -c 40000 /dev/urandom; } > "$T/img.pgm"
head -c 40000 /dev/urandom > "$T/img.raw"
head -c 100 /dev/urandom > "$T/garbage.png"
# 200 x 200 float32 zeros but sample 1000 (row 5, column 0), a NaN.
{ head -c 4000 /dev/zero; printf '\000\000\300\177'; head -c 155996 /dev/zero; } > "$T/nan.f32"
{ printf 'P5\n64 64\n255\n'; head -c 4096 /dev/urandom; } > "$T/img64.pgm"
"$E" export resnet18c "$T/r18c.onnx" --height 64 --width 64 --seed 5 > /dev/null \
  || fail "export for model add"
# edgedi run refuses a raw input sample that is not a number, and names it:
# 1x3x64x64 float32 zeros but sample 4161 (channel 1, row 1, column 1).
{ head -c 16644 /dev/zero; printf '\000\000\300\177'; head -c 32504 /dev/zero; } > "$T/nan64.f32"
if "$E" run "$T/r18c.onnx" --input "$T/nan64.f32" 2> "$T/err.txt"; then fail "run: NaN accepted"; fi
grep -q 'channel 1, row 1, column 1 is NaN' "$T/err.txt" || fail "run NaN: $(cat "$T/err.txt")"

cat > "$T/client.sh" <<SCRIPT
set -euo pipefail
E="$E"; T="$T"
fail() { echo "FAIL: \$*" >&2; exit 1; }
"\$E" devices | grep -q '^agent-2 *up' || fail "devices: agent-2 not up"
"\$E" devices --json | grep -q '"ms_per_gflop"' || fail "devices --json"
"\$E" plan vgg16c > "\$T/plan.txt" || fail "plan"
for pl in exact heuristic proportional equal; do
  grep -q "^  \$pl " "\$T/plan.txt" || fail "plan: no \$pl row: \$(cat "\$T/plan.txt")"
done
"\$E" plan vgg16c --planner heuristic --brief | grep -q 'planner heuristic' || fail "plan --planner"
if "\$E" plan vgg16c --planner nosuch 2> "\$T/err.txt"; then fail "unknown planner accepted"; fi
grep -q 'INVALID_ARGUMENT' "\$T/err.txt" || fail "unknown planner: \$(cat "\$T/err.txt")"
[ "\$("\$E" plan vgg16c --json | grep -c '"segments"')" -eq 4 ] || fail "plan --json"
"\$E" infer vgg16c "\$T/img.pgm" > "\$T/infer.txt" || fail "infer"
grep -q '^top class: ' "\$T/infer.txt" || fail "infer: no top class"
grep -q 'gathering whole maps' "\$T/infer.txt" || fail "infer: no bytes"
grep -q '^when each device computed' "\$T/infer.txt" || fail "infer: no timeline"
grep -Eq '^  agent-[0-9]+ +\|[0-9a-z.]+\| ' "\$T/infer.txt" || fail "infer: no timeline rows"
"\$E" infer vgg16c "\$T/img.raw" --raw 200x200x1 --repeat 3 | grep -q '3 requests: median' \
  || fail "infer --raw --repeat"
"\$E" infer vgg16c "\$T/img.pgm" --json > "\$T/infer.json" || fail "infer --json"
grep -q '"logits":\[' "\$T/infer.json" || fail "infer --json: no logits"
grep -Eq '"spans":\[\[[0-9]+,' "\$T/infer.json" || fail "infer --json: no spans"
grep -Eq '"cpu_ms":0*[1-9][0-9]*\.[0-9]+|"cpu_ms":0\.[0-9]*[1-9]' "\$T/infer.json" \
  || fail "infer --json: no device CPU time"
grep -q ' cpu_ms ' "\$T/infer.txt" || fail "infer: no cpu_ms column"
"\$E" model add tiny --zoo resnet18c --height 64 --width 64 | grep -q 'loaded tiny' \
  || fail "model add"
"\$E" model add "\$T/r18c.onnx" --name r18c-onnx | grep -q 'loaded r18c-onnx' \
  || fail "model add FILE.onnx"
"\$E" infer r18c-onnx "\$T/img64.pgm" | grep -q '^top class: ' || fail "infer an ONNX model"
"\$E" models --db "\$T/e.db" | grep -q "r18c-onnx" || fail "models: no r18c-onnx"
if "\$E" model add "\$T/r18c.onnx" --name tiny 2> "\$T/err.txt"; then
  fail "a name loaded again with another model"
fi
grep -q 'already loaded' "\$T/err.txt" || fail "name reuse: \$(cat "\$T/err.txt")"
if "\$E" model add "\$T/garbage.onnx" 2> "\$T/err.txt"; then fail "missing file accepted"; fi
if "\$E" infer nosuch "\$T/img.pgm" 2> "\$T/err.txt"; then fail "unknown model accepted"; fi
grep -q 'NOT_FOUND' "\$T/err.txt" || fail "unknown model: \$(cat "\$T/err.txt")"
if "\$E" infer tiny "\$T/img.pgm" 2> "\$T/err.txt"; then fail "wrong size accepted"; fi
grep -q 'INVALID_ARGUMENT' "\$T/err.txt" || fail "wrong size: \$(cat "\$T/err.txt")"
if "\$E" infer vgg16c "\$T/garbage.png" 2> "\$T/err.txt"; then fail "garbage accepted"; fi
if "\$E" infer vgg16c "\$T/nan.f32" --raw 200x200x1 --f32 2> "\$T/err.txt"; then
  fail "a NaN sample accepted"
fi
grep -q 'INVALID_ARGUMENT.*row 5, column 0, channel 0 is NaN' "\$T/err.txt" \
  || fail "NaN sample: \$(cat "\$T/err.txt")"
if "\$E" devices --scheduler 127.0.0.1:1 2> "\$T/err.txt"; then fail "dead scheduler"; fi
grep -q 'UNAVAILABLE' "\$T/err.txt" || fail "dead scheduler: \$(cat "\$T/err.txt")"
SCRIPT

"$E" cluster --agents 2 --speeds 0.5,0.25 --port 0 --db "$T/e.db" --logs "$T" \
  --models vgg16c --run "bash $T/client.sh" > "$T/cluster.txt" 2>&1 \
  || { cat "$T/cluster.txt" "$T"/*.log >&2; fail "the client script failed"; }
grep -q '^cluster up: ' "$T/cluster.txt" || fail "no 'cluster up' line"

# Supervision: an agent killed while the cluster waits is started again,
# registers, and serves; Ctrl-C (SIGINT) then stops everything cleanly.
# agent-2 is a Pi 4B at its own speed: this core's time for vgg16c whole over
# the board's 407 ms (cli/boards.h).
"$E" cluster --agents 2 --speeds 0.5,pi4b --port 0 --db "$T/s.db" --logs "$T/s" \
  --models resnet18c > "$T/sup.txt" 2>&1 &
SUP=$!
mkdir -p "$T/s"
wait_for() { # pattern, file, seconds
  for _ in $(seq $(($3 * 10))); do grep -q "$1" "$2" && return 0; sleep 0.1; done
  cat "$2" >&2; fail "no '$1' in $2 within $3 s"
}
wait_for 'ready;' "$T/sup.txt" 120
ADDR=$(sed -n 's/^cluster up: scheduler at \([^,]*\),.*/\1/p' "$T/sup.txt")
[ -n "$ADDR" ] || fail "supervised cluster: no address"
CORE_MS=$(sed -n 's/^boards: vgg16c whole takes \([0-9.]*\) ms of thread CPU.*/\1/p' \
  "$T/sup.txt")
BOARD_SPEED=$(sed -n \
  's/^boards: agent-2 is a pi4b (vgg16c whole in 407 ms): speed \([0-9.]*\)$/\1/p' "$T/sup.txt")
[ -n "$CORE_MS" ] && [ -n "$BOARD_SPEED" ] || fail "no boards lines: $(cat "$T/sup.txt")"
# Both printed rounded (0.1 ms, 1e-4): equal within that.
awk -v c="$CORE_MS" -v s="$BOARD_SPEED" \
  'BEGIN { d = c / 407 - s; exit !(c > 0 && d < 3e-4 && d > -3e-4) }' \
  || fail "pi4b at speed $BOARD_SPEED, not $CORE_MS / 407"
VICTIM=$(pgrep -f "edgedi-agent .*--scheduler $ADDR .*--name agent-1 " || true)
[ -n "$VICTIM" ] || fail "supervised cluster: no agent-1 process"
kill -9 "$VICTIM"
wait_for 'agent-1 stopped (killed by signal 9.*starting it again' "$T/sup.txt" 30
for _ in $(seq 600); do
  "$E" devices --scheduler "$ADDR" 2>/dev/null | grep -q '^agent-1 *up' && break
  sleep 0.1
done
"$E" devices --scheduler "$ADDR" | grep -q '^agent-1 *up' || fail "agent-1 not up again"
"$E" infer resnet18c "$T/img.pgm" --scheduler "$ADDR" | grep -q '^top class: ' \
  || fail "infer after agent-1 came back"
kill -INT "$SUP"
wait "$SUP" || fail "supervised cluster: exit $? after Ctrl-C: $(cat "$T/sup.txt")"

"$E" history --db "$T/e.db" > "$T/history.txt"
grep -q 'vgg16c .* ok ' "$T/history.txt" || fail "history: $(cat "$T/history.txt")"
[ "$(grep -c ' ok ' "$T/history.txt")" -ge 6 ] || fail "history: fewer than 6 requests"
"$E" history --db "$T/e.db" --json | grep -q '"bytes_gather_all":' || fail "history --json"
"$E" models --db "$T/e.db" | grep -q '^  tiny ' || fail "models"
# The newest request's measured timeline: a row per device that computed.
"$E" timeline --db "$T/e.db" > "$T/timeline.txt" || fail "timeline: $(cat "$T/timeline.txt")"
grep -q '^request [0-9]*: .* ok' "$T/timeline.txt" || fail "timeline header: $(cat "$T/timeline.txt")"
grep -Eq '^agent-[0-9]+ +\|[0-9a-z.]+\| +[0-9.]+ ms busy, +[0-9]+ %$' "$T/timeline.txt" \
  || fail "timeline rows: $(cat "$T/timeline.txt")"
"$E" timeline --db "$T/e.db" --json | grep -q '"busy_ms":' || fail "timeline --json"
if "$E" timeline 99999999 --db "$T/e.db" 2>/dev/null; then fail "timeline of no request"; fi
if "$E" timeline --width 3 --db "$T/e.db" 2>/dev/null; then fail "timeline --width 3"; fi
if "$E" timeline --db "$T/nothing.db" 2>/dev/null; then fail "timeline of a missing file"; fi
if "$E" history --db "$T/nothing.db" 2>/dev/null; then fail "history of a missing file"; fi
[ ! -e "$T/nothing.db" ] || fail "history created a database"
"$E" demo --local --runs 1 --models resnet18c | grep -q 'resnet18c' || fail "demo --local"
if "$E" cluster --speeds 0.5,pi5 --agents 2 2> "$T/err.txt"; then fail "board pi5 accepted"; fi
grep -q "'pi5' is neither a positive factor nor a board" "$T/err.txt" \
  || fail "board pi5: $(cat "$T/err.txt")"
"$E" help | grep -q 'cluster' || fail "help"
if "$E" nosuch 2>/dev/null; then fail "unknown command accepted"; fi
echo "edgedi_cli_test: all checks passed"
