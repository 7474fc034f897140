#!/usr/bin/env bash
# The GPU work of issues 9 and 10 as one prepared run for a short window on a lent GPU machine (10 minutes a call,
# about 15 a session). Stages, in order:
#   throughput  updates/s, GFLOP/s and memory per preset (small / medium / large x vector / image), eager fp32
#               against bf16 and compiled bf16 (issue 9)
#   atari       Atari 100k: wm/Pong-v0 and wm/Breakout-v0, JEPADreamer medium preset (issue 10), evaluated with
#               sampled actions: an untrained deterministic policy plays Breakout for the whole 27,000-step episode
#               without pressing FIRE (measured: 3,000 of 3,000 steps LEFT, 5 lives left), which would eat the window
#   pixel       pixel CartPole with and without distractors, JEPA against reconstruction, 50k steps (issue 10)
# The whole call ends by DEADLINE_S (540: inside the device's 600-second limit, so every stage writes its outputs);
# a training stage gets BUDGET_S seconds or what is left, keeps checkpoints every CHECKPOINT_EVERY env steps under
# RUNS (git-ignored, so it stays on the warm machine between calls), and the same command again resumes it. Each
# stage's summary, curves and its runs in progress go to $OUT. Exit status: 0 if every stage ran to its end or to
# its time limit, 1 if one failed.
#
#   bash benchmarks/device_wheels.sh     # here, once: the wheels the device image lacks, into .whl/
#   device run, carry [".whl"]:  STAGES=throughput,atari bash benchmarks/gpu_checks.sh
#   DEVICE=cpu PRESETS=tiny STAGES=throughput bash benchmarks/gpu_checks.sh   # a dry run on a CPU
#
# Settings (environment): STAGES, DEVICE (cuda), PRESETS, COMPILE (1), DEADLINE_S (540), BUDGET_S (240 per stage),
# CHECKPOINT_EVERY (5000), ATARI_STEPS (100000), ATARI_SEEDS (1), ATARI_KWARGS (preset=medium), PIXEL_STEPS (50000),
# PIXEL_SEEDS (1), PIXEL_KWARGS (none), RUNS (benchmarks/out/gpu_runs), OUT (benchmarks/out/gpu), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ -d .whl ] && ! "$py" -c "import gymnasium, stable_baselines3, ale_py, pygame" 2>/dev/null; then
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

deadline=$((SECONDS + ${DEADLINE_S:-540}))
failed=0

# limited SECONDS CMD...: run CMD for at most SECONDS; a stop at the limit is reported, any other failure counted
limited() {
    local limit=$1 status=0
    shift
    timeout --kill-after=20 "$limit" "$@" || status=$?
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        echo "stopped at its ${limit} s limit; the same command resumes it"
    elif [ "$status" != 0 ]; then
        echo "failed with exit status $status"
        failed=1
    fi
}

# seconds_left CAP: what is left before the deadline (keeping 40 s to write outputs), at most CAP
seconds_left() {
    local left=$((deadline - SECONDS - 40))
    if [ "$left" -gt "$1" ]; then left=$1; fi
    echo "$left"
}

# train NAME COMPARE-ARGS...: a resumable comparison in the time left; its summary and progress go to $OUT
train() {
    local name=$1 budget
    shift
    budget=$(seconds_left "${BUDGET_S:-240}")
    if [ "$budget" -lt 60 ]; then
        echo "$name: skipped, ${budget} s left before the deadline" | tee "$out/$name.log"
        return
    fi
    limited "$budget" "$py" -m wm_agent.compare "$@" --device "$device" --jobs 0 --no-progress --save-models \
        --checkpoint-every "${CHECKPOINT_EVERY:-5000}" --out "$runs/$name" >"$out/$name.log" 2>&1
    tail -n 1 "$out/$name.log"
    "$py" -m wm_agent.compare --report --out "$runs/$name" >"$out/${name}_summary.md" 2>&1 || true
    cp "$runs/$name"/curves_*.png "$out/" 2>/dev/null || true
}

case ",$stages," in *,throughput,*)
    variants=(--variant eager-fp32='{"precision": "float32"}' --variant bf16='{"precision": "bfloat16"}')
    if [ "${COMPILE:-1}" = 1 ]; then variants+=(--variant compiled-bf16='{"precision": "bfloat16", "compile": true}'); fi
    limited "$(seconds_left 400)" "$py" benchmarks/throughput.py --device "$device" --threads "$(nproc)" \
        --presets "${PRESETS:-small,medium,large}" --obs vector,image --updates 20 --act-steps 200 "${variants[@]}" \
        >"$out/throughput_$device.md" 2>&1
    cat "$out/throughput_$device.md"
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
exit "$failed"
