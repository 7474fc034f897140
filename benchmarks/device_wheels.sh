#!/usr/bin/env bash
# Here, before a device run: download into .whl/ (git-ignored) the wheels that the lent GPU machine's image lacks
# (it has torch, numpy, opencv, matplotlib and pandas, nothing from PyPI can be fetched there, and its Python is
# 3.12): Gymnasium, SB3, ale-py (Atari, ROMs included) and pygame (the pixel envs' renderer); about 16 MB.
# `benchmarks/gpu_checks.sh` installs them there when .whl/ travels (the device run's `carry: [".whl"]`).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
rm -rf .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2 ale-py==0.12.1 pygame-ce==2.5.8
ls -l .whl
