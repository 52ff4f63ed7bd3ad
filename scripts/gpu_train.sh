#!/usr/bin/env bash
# One call on a lent GPU machine: unpack the carried training inputs (scripts/gpu_carry.py), train the music token
# LM, the music flow model and the TTS model side by side on the one GPU within a wall-time budget, and return each
# exported model folder as a tar (weights stored as float16 to fit the transfer; the models load them as float32).
#   BUDGET=430 DEVICE=cuda OUT=/tmp/out [RUNS="lm-music flow-music tts"] [CARRY=runs/gpu] scripts/gpu_train.sh
# A run named tts-bN[-lrX] is the TTS recipe at batch N (and learning rate X), beside the others, to compare.
set -uo pipefail
BUDGET=${BUDGET:-430}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
G=${CARRY:-runs/gpu}
RUNS=${RUNS:-lm-music flow-music tts}
for f in latents-music tokens-music tokens-speech; do
  [ -d $G/$f ] && { $PY scripts/gpu_carry.py unpack $G/$f runs/$f || exit 1; }
done
[ -f $G/alignments.jsonl.gz ] && gunzip -c $G/alignments.jsonl.gz > runs/alignments.jsonl
TW="$PY -m tokenwave train"
COMMON="--device $DEVICE --time-budget $BUDGET --log-every 50 --keep-best"
for run in $RUNS; do
  case $run in
    lm-music) $TW lm --tokens runs/tokens-music --out runs/gpu-lm-music --preset small --frames 150 --steps 100000 \
      --batch-size ${LM_BATCH:-128} --lr 1e-3 --val-every 1000 --ckpt-every 2000 --tag-dropout 0.3 --melody $COMMON \
      > "$OUT/lm-music.log" 2>&1 & ;;
    flow-music) $TW flow --latents runs/latents-music --out runs/gpu-flow-music --preset small --frames 300 \
      --steps 100000 --batch-size ${FLOW_BATCH:-128} --lr 7e-4 --patch 2 --tag-dropout 0.3 --melody --val-every 1000 \
      --ckpt-every 2000 $COMMON > "$OUT/flow-music.log" 2>&1 & ;;
    tts|tts-b*)
      batch=${TTS_BATCH:-48}; lr=1e-3
      if [ "$run" != tts ]; then spec=${run#tts-b}; batch=${spec%%-lr*}; [ "$spec" != "$batch" ] && lr=${spec#*-lr}; fi
      $TW tts --tokens runs/tokens-speech --out runs/gpu-$run --preset small --alignments runs/alignments.jsonl \
      --steps 100000 --batch-size $batch --lr $lr --val-every ${TTS_VAL:-1000} --ckpt-every 2000 $COMMON \
      > "$OUT/$run.log" 2>&1 & ;;
  esac
done
wait
for run in $RUNS; do
  d=runs/gpu-$run/best
  [ -f $d/model.safetensors ] || { echo "$run: no model"; tail -20 "$OUT/$run.log"; continue; }
  $PY - "$d/model.safetensors" <<'PYEOF'
import sys
from safetensors.torch import load_file, save_file
p = sys.argv[1]
save_file({k: (v.half() if v.is_floating_point() else v) for k, v in load_file(p).items()}, p)
PYEOF
  cp runs/gpu-$run/log.jsonl $d/train_log.jsonl
  tar -cf "$OUT/$run.tar" -C runs/gpu-$run best
done
for run in $RUNS; do echo "== $run"; grep -E '"validation"|time_budget' runs/gpu-$run/log.jsonl | tail -3; tail -1 runs/gpu-$run/log.jsonl; done
ls -la "$OUT"
