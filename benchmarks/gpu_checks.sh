#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (about 7 minutes on one H100):
#   1. training throughput on the GPU, fp32 and bf16 (issue "Foundation");
#   2. the CLI on CUDA: pretrain in bf16, resume, export (ONNX + int8, verified), embed;
#   3. the four-method comparison on the GPU in bf16 (issue "Evaluation"), beside
#   4. a step-matched recipe sweep (the ten-CPU-minute recipe): each run trains for the steps
#      that ten minutes buy on the 2-core CPU, so the GPU answers a CPU question faster.
# Usage: OUT=results-folder bash benchmarks/gpu_checks.sh, on a machine with torch and CUDA;
# the packages it lacks (albumentations and its needs, monai, pydicom, mlxtend) as wheels in
# .whl/ (`pip download --no-deps --only-binary=:all: -d .whl NAME==VERSION`). Every part has its own time limit and
# writes into $OUT as it goes, so a part that fails costs only itself.
set -u
FINAL=${OUT:-build/gpu}
PY=${PY:-python3 -P} DEV=${DEV:-cuda} STEPS=${STEPS:-2500} BUDGET=${BUDGET:-45s}
OUT=/tmp/gpu-checks && rm -rf $OUT && mkdir -p "$OUT" "$FINAL"
# everything in one archive (the device tool returns at most 8 files), also when stopped
trap 'tar czf "$FINAL/gpu-checks.tgz" -C "$OUT" . ; cp "$OUT/sweep.jsonl" "$FINAL/" 2>/dev/null' EXIT
trap 'exit 143' TERM INT
export NO_ALBUMENTATIONS_UPDATE=1 OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
# the package as setuptools lays it out (package-dir), without a build; python -P keeps the
# checkout's own cossl_edge/ (which lacks training/ and export/) off sys.path
rm -rf /tmp/pkg && mkdir -p /tmp/pkg && cp -r cossl_edge /tmp/pkg/ \
  && cp -r training /tmp/pkg/cossl_edge/training && cp -r export /tmp/pkg/cossl_edge/export
export PYTHONPATH=/tmp/pkg:/tmp/site:$PWD/benchmarks
$PY -c "import torch, cossl_edge.training.loop, albumentations, monai, pydicom;
print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" \
  > "$OUT/env.txt" 2>&1 || { cat "$OUT/env.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. throughput (alone on the machine)
for p in ${SKIP_THROUGHPUT:+SKIP} "" "--bf16"; do
  [ "$p" = SKIP ] && break
  timeout 90 $PY benchmarks/train_throughput.py --device $DEV \
    ${TP:---sizes 32 64 128 --rounds 3 --steps 20} --width 0.25 --batch 128 --no-write $p \
    --json "$OUT/throughput${p:+-bf16}.json" > "$OUT/throughput${p:+-bf16}.log" 2>&1
done
tail -n 3 "$OUT"/throughput*.log

# 2. the CLI on CUDA
W=/tmp/cli && rm -rf $W && mkdir -p $W
DIG=build/compare/data/digits
(
  set -e
  $PY -m cossl_edge pretrain $DIG/unlabeled --out $W/run --max-steps 60 --bf16 --quiet
  $PY -m cossl_edge pretrain $DIG/unlabeled --out $W/run --max-steps 120 --bf16 --quiet \
    --resume
  $PY -c "import json; print('config', json.load(open('$W/run/config.json'))['device'])"
  # --bf16 auto (the default, issue 16) on CUDA: the measured choice in config.json
  $PY -m cossl_edge pretrain $DIG/unlabeled --out $W/auto --max-steps 20 --quiet
  $PY -c "import json; c=json.load(open('$W/auto/config.json')); print('auto', c['bf16_resolved'], c['bf16_choice'])"
  $PY -m cossl_edge export $W/run --out $W/onnx --calibration $DIG/unlabeled
  $PY -m cossl_edge embed $W/onnx/encoder.int8.onnx $DIG/labeled --out $W/emb.npz
  $PY -c "import numpy as np; z=np.load('$W/emb.npz'); print({k: z[k].shape for k in z})"
) > "$OUT/cli.log" 2>&1 || echo "CLI check FAILED" >> "$OUT/cli.log"
cp $W/onnx/export-report.json "$OUT/export-report.json" 2>/dev/null
tail -n 4 "$OUT/cli.log"

# 3 and 4 side by side: the comparison (3 workers) and the step-matched sweep (one process
# per setting, augmentation in the process), 16 cores in all.
timeout 300 $PY benchmarks/compare_methods.py --budget $BUDGET --seeds 1 --datasets digits \
  --device $DEV --bf16 --set workers=3 --work /tmp/compare \
  --results "$OUT/compare_gpu.json" > "$OUT/compare.log" 2>&1 &
sweep() {  # dataset tag settings...
  local d=$1 t=$2; shift 2
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  OMP_NUM_THREADS=1 timeout 300 $PY benchmarks/recipe_sweep.py --dataset "$d" \
    --steps "$STEPS" --tag "$t" --log "$OUT/sweep.jsonl" --set bf16=true --set device=$DEV \
    "${sets[@]}" > "$OUT/sweep-$d-$t.log" 2>&1
}
# "base" is the recipe as it was when this ran (flip 0.5, no rotation); no flip and a
# rotation of ±15° are the one-channel default since.
sweep digits base-s0 rotate=0 hflip=0.5 &
sweep digits base-s1 rotate=0 hflip=0.5 seed=1 &
sweep digits simclr rotate=0 hflip=0.5 method=simclr &
sweep digits noflip rotate=0 hflip=0 &
sweep digits nosolarize rotate=0 hflip=0.5 solarize=0 &
sweep digits noflip-nosolarize rotate=0 hflip=0 solarize=0 &
sweep digits ws0.1 rotate=0 hflip=0.5 w_s=0.1 &
sweep mnist5k base-s0 rotate=0 hflip=0.5 &
sweep mnist5k noflip rotate=0 hflip=0 &
sweep mnist5k nosolarize rotate=0 hflip=0.5 solarize=0 &
wait
tail -n 8 "$OUT/compare.log"
cat "$OUT/sweep.jsonl" 2>/dev/null | cut -c1-300
