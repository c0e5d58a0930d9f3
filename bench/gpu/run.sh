#!/usr/bin/env bash
# The GPU measurement kit, one command: on the GPU machine (no network; run from the repository root, with
# bench/gpu/wheels carried), or on any machine to check it end to end (the GPU parts then skip).
#   1. installs the carried wheels offline into /tmp/site without touching torch (skipped where they import);
#   2. runs the GPU tests (pytest -m gpu: bf16, nvJPEG, every family's smoke run on CUDA, torch.compile);
#   3. runs every benchmark (bench/gpu/collect.py) and writes $OUT/gpu_results.json and $OUT/gpu_results.md
#      with the device name and the date.
# Budget: under 9 minutes in all (tests 200 s, benchmarks 300 s, each benchmark its own limit).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export MAE_SUITE_CACHE=${MAE_SUITE_CACHE:-/tmp/mae_suite_cache}
if ! python3 -c 'import mmengine, pycocotools' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    bench/gpu/wheels/*.whl || { echo "run.sh: cannot install bench/gpu/wheels (run bench/gpu/prepare.sh here first)"; exit 2; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "gpu tests: exit ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_tests.log"
timeout 300 python3 bench/gpu/collect.py --out "$OUT" --tests-log "$OUT/gpu_tests.log"
echo "results: $OUT/gpu_results.md"
