#!/usr/bin/env bash
# One call on a lent GPU machine: unpack the carried training inputs (scripts/gpu_carry.py), train the music token
# LM, the music flow model and the TTS model side by side on the one GPU within a wall-time budget, and return each
# exported model folder as a tar (weights stored as float16 to fit the transfer; the models load them as float32).
#   BUDGET=430 DEVICE=cuda OUT=/tmp/out [RUNS="lm-music flow-music tts"] [CARRY=runs/gpu] scripts/gpu_train.sh
# A run named tts-bN[-lrX] is the TTS recipe at batch N (and learning rate X), beside the others, to compare.
#
# codec (RUNS=codec): the codec recipe on Opus-carried datasets (scripts/gpu_carry.py pack-audio). Every call first
# copies the dataset folders under CODEC_CARRY (default runs/gpu-audio) into STASH (default /tmp/tokenwave-audio,
# which lasts while the machine stays warm), so a corpus carried in parts by several calls merges there; RUNS=""
# only stashes and lists. The codec trains on every dataset in the stash (or CODEC_DATA, a list of folders):
# CODEC_INIT=DIR fine-tunes DIR (e.g. checkpoints/codec), else CODEC_PRESET (default) from scratch; CODEC_BATCH (64),
# CODEC_SEGMENT (1.0 s), CODEC_LR (5e-4), CODEC_ADV_START (2000), CODEC_VAL (500); a run named codec-bN trains at
# batch N beside the others (RUNS="codec codec-b256": two batch sizes on the one GPU). CODEC_EXPECT=N: train only if
# the stash holds N dataset folders (else the earlier calls' parts were lost: exit 3). A returned tar over 15 MiB comes
# back in pieces NAME.tar.00, .01, ... (the 16 MiB limit per file): cat NAME.tar.* | tar -x
#   CODEC_EXPECT=9 CODEC_INIT=checkpoints/codec RUNS=codec BUDGET=420 bash scripts/gpu_train.sh   (MODEL.md of the codec)
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
RUNS=${RUNS-lm-music flow-music tts}
STASH=${STASH:-/tmp/tokenwave-audio}
if [ -d "${CODEC_CARRY:-runs/gpu-audio}" ]; then
  mkdir -p "$STASH" && cp -r "${CODEC_CARRY:-runs/gpu-audio}"/. "$STASH"/ || exit 1
fi
CODEC_DATA=${CODEC_DATA:-$( [ -d "$STASH" ] && find "$STASH" -name manifest.jsonl -printf '%h\n' | sort)}
[ -n "$CODEC_DATA" ] && $PY - $CODEC_DATA <<'PYEOF'
import json, sys
from pathlib import Path
total = {"train": 0.0, "valid": 0.0}
for d in sys.argv[1:]:
    rows = [json.loads(line) for line in open(Path(d) / "manifest.jsonl")]
    hours = {s: sum(r["duration"] for r in rows if r["split"] == s) / 3600 for s in total}
    mib = sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file()) / 2**20
    print(f"{d}: {len(rows)} clips, train {hours['train']:.3f} h, valid {hours['valid']:.3f} h, {mib:.1f} MiB")
    total = {s: total[s] + hours[s] for s in total}
print(f"codec data: {len(sys.argv) - 1} folders, train {total['train']:.3f} h, valid {total['valid']:.3f} h")
PYEOF
n=$(echo $CODEC_DATA | wc -w)
if [[ " $RUNS " == *" codec"* ]] && [ "$n" -lt "${CODEC_EXPECT:-0}" ]; then
  echo "codec: $n of the $CODEC_EXPECT expected dataset folders are here (the machine went back between calls?): not training"
  exit 3
fi
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
    codec|codec-b*)
      [ -n "$CODEC_DATA" ] || { echo "codec: no datasets in $STASH (carry scripts/gpu_carry.py pack-audio folders)"; continue; }
      batch=${CODEC_BATCH:-64}; [ "$run" != codec ] && batch=${run#codec-b}
      args=(); for d in $CODEC_DATA; do args+=(--data "$d"); done
      if [ -n "${CODEC_INIT:-}" ]; then args+=(--init "$CODEC_INIT"); else args+=(--preset "${CODEC_PRESET:-default}"); fi
      $TW codec "${args[@]}" --out runs/gpu-$run --steps 100000 --batch-size $batch \
      --segment ${CODEC_SEGMENT:-1.0} --lr ${CODEC_LR:-5e-4} --adv-start ${CODEC_ADV_START:-2000} \
      --val-every ${CODEC_VAL:-500} --ckpt-every 2000 $COMMON > "$OUT/$run.log" 2>&1 & ;;
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
  if [ "$(stat -c %s "$OUT/$run.tar")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d -a 2 "$OUT/$run.tar" "$OUT/$run.tar." && rm "$OUT/$run.tar"
  fi
done
for run in $RUNS; do echo "== $run"; grep -E '"validation"|time_budget' runs/gpu-$run/log.jsonl | tail -3; tail -1 runs/gpu-$run/log.jsonl; done
ls -la "$OUT"
