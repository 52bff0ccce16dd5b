#!/usr/bin/env bash
# fuzz_onnx.sh — fuzzes the ONNX importer with libFuzzer, then folds what it
# found into the committed corpus.
#
#   scripts/fuzz_onnx.sh [SECONDS]      fuzz for SECONDS (default 600), merge
#   scripts/fuzz_onnx.sh --merge-only   rebuild and re-minimize the corpus
#
# Built with clang outside Bazel (Bazel 4's toolchain here is gcc, and
# libFuzzer needs -fsanitize=fuzzer): the harness tests/fuzz/onnx_import_fuzz.c,
# the importer, exporter, fusion and reference executor sources, and the
# protoc-c code of Debian's onnx.proto, all under ASan and UBSan. The seeds
# come from tests/fuzz/onnx_seeds.c (miniature models, PyTorch-style graphs,
# zoo exports at 48x48, damaged copies) plus the committed corpus.
#
# After the run the corpus is minimized with -merge=1 and inputs over
# MAX_KEEP_BYTES are dropped, so tests/fuzz/corpus/onnx_import stays a few
# MB; tests:onnx_fuzz_corpus_test replays it in CI. A crash leaves its input
# as crash-* in the work directory and makes the script fail. Single core:
# run it niced when the machine is shared (nice -n 10 scripts/fuzz_onnx.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=600
MERGE_ONLY=0
case "${1:-}" in
  --merge-only) MERGE_ONLY=1 ;;
  "") ;;
  *) SECONDS_TO_RUN=$1 ;;
esac
WORK=${FUZZ_WORK:-/tmp/edgedi-fuzz-onnx}
CORPUS=tests/fuzz/corpus/onnx_import
MAX_LEN=32768        # bytes of one fuzzed input
MAX_KEEP_BYTES=65536 # larger corpus files are not committed
RSS_LIMIT_MB=2048

mkdir -p "$WORK/gen/third_party/onnx" "$WORK/seeds" "$WORK/found" "$CORPUS"
cp /usr/include/onnx/onnx.proto "$WORK/gen/third_party/onnx/onnx.proto"
protoc-c --proto_path="$WORK/gen/third_party/onnx" \
  --c_out="$WORK/gen/third_party/onnx" "$WORK/gen/third_party/onnx/onnx.proto"

CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -I. -I"$WORK/gen" -Wall -Wextra -Wno-unused-parameter)
LIB_SRCS=(runtime/err.c runtime/model.c runtime/fuse.c runtime/ref.c
          runtime/onnx_import.c runtime/onnx_import_data.c runtime/onnx_import_ops.c
          runtime/onnx_import_shape.c runtime/onnx_export.c
          "$WORK/gen/third_party/onnx/onnx.pb-c.c")
LIBS=(-lprotobuf-c -lm)

echo "fuzz_onnx: building in $WORK"
clang "${CFLAGS[@]}" -fsanitize=fuzzer tests/fuzz/onnx_import_fuzz.c \
  "${LIB_SRCS[@]}" "${LIBS[@]}" -o "$WORK/onnx_import_fuzz"
clang "${CFLAGS[@]}" tests/fuzz/onnx_seeds.c tests/onnx_testlib.c \
  runtime/zoo.c runtime/zoo_vgg.c runtime/zoo_resnet.c \
  "${LIB_SRCS[@]}" "${LIBS[@]}" -o "$WORK/onnx_seeds"
"$WORK/onnx_seeds" "$WORK/seeds" --zoo

FUZZ=("$WORK/onnx_import_fuzz" -rss_limit_mb=$RSS_LIMIT_MB -max_len=$MAX_LEN
      -timeout=20 -print_final_stats=1)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

if [ "$MERGE_ONLY" -eq 0 ]; then
  echo "fuzz_onnx: fuzzing for ${SECONDS_TO_RUN}s"
  (cd "$WORK" && "${FUZZ[@]}" -max_total_time="$SECONDS_TO_RUN" \
     -artifact_prefix="$WORK/" "$WORK/found" "$OLDPWD/$CORPUS" "$WORK/seeds")
fi

echo "fuzz_onnx: minimizing the corpus"
rm -rf "$WORK/merged" && mkdir -p "$WORK/merged"
"${FUZZ[@]}" -merge=1 "$WORK/merged" "$CORPUS" "$WORK/found" "$WORK/seeds"
find "$WORK/merged" -type f -size +"${MAX_KEEP_BYTES}"c -delete
rm -f "$CORPUS"/*
cp "$WORK/merged"/* "$CORPUS"/
echo "fuzz_onnx: $(ls "$CORPUS" | wc -l) files, $(du -sh "$CORPUS" | cut -f1) in $CORPUS"
if ls "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* "$WORK"/oom-* >/dev/null 2>&1; then
  echo "fuzz_onnx: findings left in $WORK:" && ls "$WORK"/crash-* "$WORK"/leak-* \
    "$WORK"/timeout-* "$WORK"/oom-* 2>/dev/null
  exit 1
fi
