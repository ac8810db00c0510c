#!/bin/bash
# On a lent GPU machine without TensorFlow (docs/speed.md, "On a GPU"): unpack what
# scripts/device/pack.sh made, map TensorFlow's CUDA 12 library names onto the machine's CUDA 13
# libraries, check that TensorFlow sees the GPU, then `benchmark.py train` and `complete`, 100 s of
# `inpaint train --init-from pretrained` on the carried faces (exported; the generator comes back
# in 15 MB pieces) and `inpaint complete` of data/samples. Everything it prints is also in
# $OUT/run.log. The parts arrive one a call in folders .s0, .s1, ... of the repository (each call
# moves its folder's part to /tmp/stash); the last call runs this script. Set PY, OUT, TRAIN_S,
# BENCH_S, CPU_OK=1 (go on without a GPU) to try it on a CPU.
set -u
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
REPO=$PWD
mkdir -p /tmp/stash; for d in .s[0-9]*; do [ -d "$d" ] && mv "$d"/* /tmp/stash/ 2>/dev/null; done; ls -la /tmp/stash
if [ ! -f /tmp/site/.done ]; then
  rm -rf /tmp/payload /tmp/site; mkdir -p /tmp/payload /tmp/site
  cat /tmp/stash/part* | tar xf - -C /tmp/payload || { el "payload incomplete"; ls -la /tmp/stash; exit 3; }
  zstd -d -q --long=30 -c /tmp/payload/tf.tar.zst | tar xf - -C /tmp/site || { el "tf unpack failed"; exit 3; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/payload/whl/*.whl || exit 3
  touch /tmp/site/.done
fi
el "assembled: $(du -sh /tmp/site | cut -f1)"
# TensorFlow 2.21 dlopens CUDA 12 names; the machine has CUDA 13's (cuBLAS 13, cuFFT 12, cuSOLVER 12,
# cuSPARSE 12, cuDNN 9). cudart 12 itself travels (nvidia-cuda-runtime-cu12 wheel).
mkdir -p /tmp/cu12; DIRS=""
lib() { find /opt /usr/local /usr/lib -name "$1" 2>/dev/null | grep -v /tmp/ | head -1; }
for pair in libcublas.so.12:libcublas.so.13 libcublasLt.so.12:libcublasLt.so.13 \
            libcufft.so.11:libcufft.so.12 libcusolver.so.11:libcusolver.so.12 \
            libcusparse.so.12:libcusparse.so.12 libcudnn.so.9:libcudnn.so.9 \
            libcupti.so.12:libcupti.so.13 libnccl.so.2:libnccl.so.2 libnvJitLink.so.12:libnvJitLink.so.13; do
  want=${pair%%:*}; have=$(lib "${pair##*:}")
  if [ -n "$have" ]; then ln -sf "$have" /tmp/cu12/$want; DIRS="$DIRS:$(dirname "$have")"; echo "$want -> $have"
  else echo "$want: no ${pair##*:} found"; fi
done
export LD_LIBRARY_PATH=/tmp/cu12$DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=/tmp/site:$REPO PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tail -2
$PY - <<'PYEOF' > "$OUT/gpu_check.log" 2>&1
import time, tensorflow as tf
print("tf", tf.__version__, "built with", tf.sysconfig.get_build_info().get("cuda_version"))
g = tf.config.list_physical_devices("GPU"); print("GPUS", g)
if g:
    print(tf.config.experimental.get_device_details(g[0]))
    x = tf.random.normal((4096, 4096)); print("matmul", float(tf.reduce_sum(tf.matmul(x, x))))
    c = tf.keras.layers.Conv2D(64, 5, strides=2, padding="same")
    print("conv", c(tf.random.normal((8, 64, 64, 3))).shape)
    print("deconv", tf.keras.layers.Conv2DTranspose(8, 5, 2, padding="same")(tf.ones((2, 8, 8, 4))).shape)
PYEOF
cat "$OUT/gpu_check.log" | grep -vE "^WARNING: All log|^I0000" | tail -25
grep -q "GPUS \[Phys" "$OUT/gpu_check.log" || [ -n "${CPU_OK:-}" ] || { el "no GPU in TensorFlow"; ls -la /tmp/cu12; exit 4; }
el "TensorFlow checked: $(grep -o "GPUS .*" "$OUT/gpu_check.log")"
timeout ${BENCH_S:-150} $PY scripts/benchmark.py train --repeats 20 > "$OUT/bench_train.txt" 2>&1; el "bench train rc=$?"
grep -E "^\||^on |auto" "$OUT/bench_train.txt"
timeout ${BENCH_S:-100} $PY scripts/benchmark.py complete --repeats 20 > "$OUT/bench_complete.txt" 2>&1; el "bench complete rc=$?"
grep -E "^\||^on " "$OUT/bench_complete.txt"
FACES=/tmp/payload/faces; [ -d "$FACES" ] || FACES=data/samples
timeout -s INT ${TRAIN_S:-100} $PY -m inpaint train --dataset "$FACES" -o /tmp/run --init-from pretrained --epochs 1000 2>&1 | tr '\r' '\n' | grep -vE "^I0000|^WARNING: All" | tail -5
el "train stopped"; sleep 1
$PY -m inpaint train -o /tmp/run --export-only -q; el "export rc=$?"
(cd /tmp/run && tar cf "$OUT/run_small.tar" metrics.jsonl run.json config.toml model/config.toml model/model.json)
split -b 15000000 -d -a 1 /tmp/run/model/generator.keras "$OUT/generator.keras.part"
tail -2 /tmp/run/metrics.jsonl | cut -c1-300
ls /tmp/run/checkpoints | tail -3
el "complete data/samples"; $PY -m inpaint complete data/samples/*.png --outDir /tmp/c -q; el "complete rc=$?"
ls /tmp/c | head -5
el "all done"
