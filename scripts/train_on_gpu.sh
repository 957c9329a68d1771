#!/usr/bin/env bash
# Train the scratch detector and the detail fusion side by side on one borrowed GPU within a fixed time budget, then
# the scratch verifier on the new detector's marks.
#
# Prepared for the device tool's machine (PyTorch there, no network, only the repository travels):
#   python scripts/pack_device_data.py --out devdata --quality 85 --stamp-every 3      # here, ~40 MB
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl platformdirs
#   then run this script there with devdata and .whl carried; OUT is where results go.
# Locally (a CPU smoke test of the same script):
#   DEVICE=cpu PRECISION=fp32 MINUTES=0.3 WORKERS=1 VERIFIER_CROPS=20 VERIFIER_STEPS=4 bash scripts/train_on_gpu.sh
#
# When the detector's run ends, the scratch verifier is trained on *its* marks (--detector-weights): a verifier drawn
# from another detector's marks judges a new detector's poorly (session 18), so a detector is only usable with its
# own verifier. The verifier trains on the host's CPU cores (bf16 where they have it); its pool (hundreds of MB) and
# checkpoint stay in runs/gpu-verifier/, out of $OUT.
#
# The detector trains with flaking emulsion added to its damage (session 16: without it every fine-tune of the shipped
# detector stopped marking the labelled real emulsion loss within 250 steps) and, with HARD=<file>, hard negatives.
# Both runs start from the shipped weights (--init) and stop after MINUTES of training each; each exports the
# best network on its validation set to $OUT with a JSON sidecar, and logs to $OUT/*.log.
set -uo pipefail
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-6}  # the device lends 15 minutes in all: start-up, these and the verifier after them
WORKERS=${WORKERS:-7}
DATA=${DATA:-devdata}
# Hard negatives for the detector (scripts/mine_hard_negatives.py; carry the file along), if any.
HARD=${HARD:-}
# bf16 on the GPU; PRECISION=fp32 for the CPU smoke test on a CPU without native bf16 (refused there as slower).
PRECISION=${PRECISION:-bf16}
VERIFIER_CROPS=${VERIFIER_CROPS:-2000}
VERIFIER_STEPS=${VERIFIER_STEPS:-2000}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

python3 -m oldphoto train scratch \
    --data "$DATA/clean" --val "$DATA/val/kodak24" --damage-dir "$DATA/damage" \
    --real "$DATA/real_old" --real-labels "$DATA/real_labels/real_old_mask_components.json" \
    --preset default --preset bopbtl --init weights/scratch-unet.safetensors \
    --extra-damage flaking:0.15 ${HARD:+--hard-negatives "$HARD"} \
    --device "$DEVICE" --precision "$PRECISION" --workers "$WORKERS" \
    --batch-size 32 --crop 256 --learning-rate 1e-3 --positive-weight 3 --steps 6000 --time-budget "$MINUTES" \
    --validate-every 500 \
    --out "$OUT/scratch-unet.safetensors" --checkpoint "$OUT/scratch-checkpoint.pt" --overwrite >"$OUT/scratch.log" 2>&1 &
scratch=$!

python3 -m oldphoto train detail-fusion \
    --data "$DATA/clean" --val "$DATA/val/kodak24" --damage-dir "$DATA/damage" \
    --preset default --preset bopbtl --clean-fraction 0.25 \
    --device "$DEVICE" --precision "$PRECISION" --workers "$WORKERS" \
    --batch-size 16 --crop 256 --learning-rate 1e-3 --steps 8000 --time-budget "$MINUTES" \
    --validate-every 500 --val-samples 32 \
    --out "$OUT/detail-fusion.safetensors" --checkpoint runs/detail-fusion/checkpoint.pt --overwrite >"$OUT/detail.log" 2>&1 &
detail=$!

wait $scratch; scratch_rc=$?
verifier_rc=skipped
if [ "$scratch_rc" = 0 ]; then
    python3 -m oldphoto train scratch-verifier \
        --data "$DATA/clean" --damage-dir "$DATA/damage" \
        --real "$DATA/real_old" --real-labels "$DATA/real_labels/real_old_mask_components.json" \
        --detector-weights "$OUT/scratch-unet.safetensors" --precision auto \
        --crops "$VERIFIER_CROPS" --crop 384 --steps "$VERIFIER_STEPS" --validate-every 250 \
        --out "$OUT/scratch-verifier.safetensors" --checkpoint runs/gpu-verifier/checkpoint.pt --overwrite >"$OUT/verifier.log" 2>&1
    verifier_rc=$?
fi
wait $detail; detail_rc=$?
echo "scratch rc $scratch_rc, scratch-verifier rc $verifier_rc, detail-fusion rc $detail_rc"
for log in "$OUT"/scratch.log "$OUT"/verifier.log "$OUT"/detail.log; do
    [ -f "$log" ] || continue
    echo "== $log"; grep -E "step [0-9]+:|best validation|Error|error" "$log" | tail -30
done
ls -la "$OUT"
