#!/usr/bin/env bash
# Pack TensorFlow and the wheels it needs for a GPU machine that cannot install from PyPI and takes
# at most 64 MiB of files a call (the development `device` machines: Python 3.12, PyTorch and
# CUDA 13 but no TensorFlow; docs/speed.md, "On a GPU"). Writes OUT/part0, part1, ... of 64,000,000
# bytes, to travel one a call, and run_on_gpu.sh unpacks them there.
#
#     scripts/device/pack.sh OUT [FACES_DIR [N]]    # N aligned faces to train on there (5200)
#
# What goes: the tensorflow 2.21.0 cp312 wheel without its C++ headers (431 MB), its 90 MB
# profiler plugin (a stub: tf.profiler will not work) and the StableHLO extension; the machine
# code of every GPU architecture but sm_90 zeroed (scripts/device/fatbin.py); zstd -19. 573 MB of
# wheel -> 207 MB. With it: Keras and the small packages TensorFlow imports, at this project's
# versions, and nvidia-cuda-runtime-cu12 (cudart 12; the machine's CUDA 13 cuBLAS, cuDNN, cuFFT,
# cuSOLVER and cuSPARSE stand in for the rest: run_on_gpu.sh). Needs pip, zstd, readelf.
set -euo pipefail
out=${1:?usage: pack.sh OUT [FACES_DIR [N]]}
faces=${2:-}; n=${3:-5200}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/payload/whl" "$work/site"
get() {  # pip download of cp312 manylinux wheels, no dependencies
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$@"
}
echo "downloading tensorflow 2.21.0 (573 MB)"
get "$work" tensorflow==2.21.0
unzip -q "$work"/tensorflow-2.21.0-*.whl -d "$work/site" -x 'tensorflow/include/*'
rm "$work"/tensorflow-2.21.0-*.whl
tf="$work/site/tensorflow"
rm "$tf/compiler/mlir/stablehlo/stablehlo_extension.so"
rm "$tf/python/profiler/internal/_pywrap_profiler_plugin.so"
echo '"""Stub: the profiler plugin was left out of this carried copy (scripts/device/pack.sh)."""' \
  > "$tf/python/profiler/internal/_pywrap_profiler_plugin.py"
for lib in libtensorflow_cc.so.2 libtensorflow_framework.so.2; do
  python3 "$here/fatbin.py" "$tf/$lib" --keep 90 | tail -1
done
echo "compressing (zstd -19: about 3 minutes on 2 cores)"
(cd "$work/site" && tar cf - tensorflow tensorflow-2.21.0.dist-info) |
  zstd -19 --long=30 -T0 -q -o "$work/payload/tf.tar.zst"
rm -rf "$work/site"
get "$work/payload/whl" keras==3.15.1 namex==0.1.0 optree==0.20.0 astunparse==1.6.3 gast==0.7.0 \
  google_pasta==0.2.0 termcolor==3.3.0 ml_dtypes==0.7.0 protobuf==7.36.2 h5py==3.14.0 \
  flatbuffers==25.12.19 wrapt==2.5.2 absl-py==2.5.1 opt_einsum==3.4.0 \
  nvidia-cuda-runtime-cu12==12.9.79
if [ -n "$faces" ]; then
  mkdir -p "$work/payload/faces"
  mapfile -t pngs < <(find "$faces" -maxdepth 1 -name '*.png' | sort)  # no pipefail on head
  [ ${#pngs[@]} -gt 0 ] || { echo "no .png faces in $faces" >&2; exit 2; }
  cp -t "$work/payload/faces" "${pngs[@]:0:$n}"
fi
rm -f "$out"/part*
(cd "$work/payload" && tar cf - .) | split -b 64000000 -d -a 1 - "$out/part"
ls -l "$out"
