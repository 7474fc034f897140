#!/usr/bin/env bash
# The GPU work of issues 9 and 10 as one prepared run for a short window on a lent GPU machine (10 minutes a call,
# about 15 a session). Stages, in order:
#   throughput  updates/s, GFLOP/s and memory per preset (small / medium / large x vector / image), eager fp32
#               against bf16 and compiled bf16 (issue 9)
#   atari       Atari 100k: wm/Pong-v0 and wm/Breakout-v0, JEPADreamer medium preset (issue 10), evaluated with
#               sampled actions: an untrained deterministic policy plays Breakout for the whole 27,000-step episode
#               without pressing FIRE (measured: 3,000 of 3,000 steps LEFT, 5 lives left), which would eat the window
#   pixel       pixel CartPole with and without distractors, JEPA against reconstruction, 50k steps (issue 10)
# A training stage stops after BUDGET_S seconds and keeps checkpoints every CHECKPOINT_EVERY env steps under RUNS
# (git-ignored, so it stays on the warm machine between calls): the same command again resumes it. Each stage's
# summary, curves and its runs in progress go to $OUT.
#
#   bash benchmarks/device_wheels.sh     # here, once: the wheels the device image lacks, into .whl/
#   device run, carry [".whl"]:  STAGES=throughput,atari bash benchmarks/gpu_checks.sh
#   DEVICE=cpu PRESETS=tiny STAGES=throughput bash benchmarks/gpu_checks.sh   # a dry run on a CPU
#
# Settings (environment): STAGES, DEVICE (cuda), PRESETS, COMPILE (1), BUDGET_S (240 per training stage),
# CHECKPOINT_EVERY (5000), ATARI_STEPS (100000), ATARI_SEEDS (1), ATARI_KWARGS (preset=medium), PIXEL_STEPS (50000),
# PIXEL_SEEDS (1), PIXEL_KWARGS (none), RUNS (benchmarks/out/gpu_runs), OUT (benchmarks/out/gpu), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ -d .whl ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
stages=${STAGES:-throughput,atari,pixel}
out=${OUT:-benchmarks/out/gpu}
runs=${RUNS:-benchmarks/out/gpu_runs}
mkdir -p "$out" "$runs"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"; fi

# train NAME COMPARE-ARGS...: a resumable comparison, stopped after BUDGET_S seconds; summary and progress to $OUT
train() {
    local name=$1 status=0
    shift
    timeout --kill-after=30 "${BUDGET_S:-240}" "$py" -m wm_agent.compare "$@" --device "$device" --jobs 0 \
        --no-progress --save-models --checkpoint-every "${CHECKPOINT_EVERY:-5000}" --out "$runs/$name" \
        >"$out/$name.log" 2>&1 || status=$?
    [ "$status" = 124 ] && echo "$name: stopped after ${BUDGET_S:-240} s; the same command resumes it" | tee -a "$out/$name.log"
    "$py" -m wm_agent.compare --report --out "$runs/$name" >"$out/${name}_summary.md" 2>&1 || true
    cp "$runs/$name"/curves_*.png "$out/" 2>/dev/null || true
    tail -n 3 "$out/${name}_summary.md"
}

case ",$stages," in *,throughput,*)
    variants=(--variant eager-fp32='{"precision": "float32"}' --variant bf16='{"precision": "bfloat16"}')
    if [ "${COMPILE:-1}" = 1 ]; then variants+=(--variant compiled-bf16='{"precision": "bfloat16", "compile": true}'); fi
    "$py" benchmarks/throughput.py --device "$device" --threads "$(nproc)" --presets "${PRESETS:-small,medium,large}" \
        --obs vector,image --updates 20 --act-steps 200 "${variants[@]}" | tee "$out/throughput_$device.md"
esac
case ",$stages," in *,atari,*)
    train atari100k --env wm/Pong-v0,wm/Breakout-v0 --algos jepa_dreamer \
        --algo-kwargs "jepa_dreamer:${ATARI_KWARGS:-preset=medium}" --steps "${ATARI_STEPS:-100000}" \
        --seeds "${ATARI_SEEDS:-1}" --eval-every 10000 --eval-episodes 5 --eval-stochastic
esac
case ",$stages," in *,pixel,*)
    kwargs=()
    if [ -n "${PIXEL_KWARGS:-}" ]; then kwargs=(--algo-kwargs "jepa_dreamer:$PIXEL_KWARGS"); fi
    train pixel50k --env wm/PixelCartPole-v0,wm/DistractorCartPole-v0 --algos jepa_dreamer,jepa_dreamer@reconstruction \
        --algo-kwargs jepa_dreamer@reconstruction:representation=reconstruction "${kwargs[@]}" \
        --steps "${PIXEL_STEPS:-50000}" --seeds "${PIXEL_SEEDS:-1}" --eval-every 5000
esac
