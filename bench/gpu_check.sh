#!/usr/bin/env bash
# Every GPU check of issue 5 in one device call (the machine has torch + CUDA, onnx, onnxruntime (CPU),
# no network, no TensorRT unless someone brings it). Logs and tables go to $OUT.
#
# Prepare here, once per session (.whl/ must be ignored, and carried):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl roifile pycocotools
# Then call the device tool: command `bash bench/gpu_check.sh`, carry [".whl"], timeout_s 540.
# About 1 min of set-up and tests, 2-3 min per benchmark on an H200 (not yet timed there).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SITE=/tmp/mito-site
# roifile and pycocotools are the runtime's only dependencies that machine lacks
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || exit 1
# the package as its folders, without installing its pins: the machine's own torch and torchvision run it
mkdir -p "$SITE/mitotally" && touch "$SITE/mitotally/__init__.py"
for d in runtime trainer export models; do ln -sfn "$PWD/$d" "$SITE/mitotally/$d"; done
export PYTHONPATH="$SITE"
{ nvidia-smi; python3 -c "import torch, torchvision, onnxruntime as o; print(torch.__version__, torchvision.__version__, o.__version__, o.get_available_providers()); print(torch.cuda.get_device_name())"; python3 -c "import tensorrt; print('tensorrt', tensorrt.__version__)" || true; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider -rs tests/ 2>&1 | tee "$OUT/gpu_tests.txt"
timeout 60 python3 bench/gpu_precision.py samples/ 2>&1 | tee "$OUT/gpu_precision.md"
timeout 150 python3 bench/bench_backends.py --device cuda --frames 4 -o "$OUT/backends.md" 2>&1 | tee "$OUT/bench_backends.log"
timeout 150 python3 bench/bench_run.py --device cuda --frames 8 2>&1 | tee "$OUT/bench_run.md"
