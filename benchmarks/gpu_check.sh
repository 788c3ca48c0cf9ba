#!/usr/bin/env bash
# Issue 13's GPU checks in one call on the lent GPU machine (../shared/gpu/README.md):
#   here, once:  bash ../shared/gpu/bundle.sh
#   device tool: run, carry [".gpu"], timeout_s 570, command:
#                bash .gpu/run.sh bash benchmarks/gpu_check.sh
# 1. the tests that touch the GPU path (CUDA graphs, device-side gradient statistics, resume
#    on CUDA and across devices; the kill/resume and end-to-end tests run on the GPU there,
#    since --device auto picks it), 4 workers; 2. benchmarks/bench_gpu.py.
# Writes $OUT/gpu_tests.txt and $OUT/bench_gpu.txt and prints their tails.
set -u
out=${OUT:-/tmp}
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 4 tests/test_train_step.py tests/test_gradient_stats.py \
  tests/test_interrupt_resume.py tests/test_end_to_end.py -rs >"$out/gpu_tests.txt" 2>&1
echo "pytest exit $?"; tail -15 "$out/gpu_tests.txt"
timeout 330 python3 benchmarks/bench_gpu.py >"$out/bench_gpu.txt" 2>&1
echo "bench_gpu exit $?"; cat "$out/bench_gpu.txt"
