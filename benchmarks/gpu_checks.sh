#!/usr/bin/env bash
# The GPU checks of the speed issue as one prepared run, for a short GPU window (about 10 minutes on one H100):
# throughput per preset (small / medium / large x vector / image), eager fp32 against bf16 and compiled bf16,
# with replayed steps/s, GPU memory and the compile start-up time. Tables go to $OUT (default benchmarks/out/gpu).
#
#   bash benchmarks/gpu_checks.sh                       # on the GPU machine
#   DEVICE=cpu PRESETS=tiny bash benchmarks/gpu_checks.sh   # a dry run of the same commands on a CPU
#   COMPILE=0 bash benchmarks/gpu_checks.sh             # without the compiled variant (its start-up is minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
presets=${PRESETS:-small,medium,large}
out=${OUT:-benchmarks/out/gpu}
mkdir -p "$out"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"; fi
variants=(--variant eager-fp32='{"precision": "float32"}' --variant bf16='{"precision": "bfloat16"}')
if [ "${COMPILE:-1}" = 1 ]; then variants+=(--variant compiled-bf16='{"precision": "bfloat16", "compile": true}'); fi
python benchmarks/throughput.py --device "$device" --threads "$(nproc)" --presets "$presets" --obs vector,image \
    --updates 20 --act-steps 200 "${variants[@]}" | tee "$out/throughput_$device.md"
