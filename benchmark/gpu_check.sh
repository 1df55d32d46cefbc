#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes at most): AMP training throughput of ResNet-50 and
# U-Net, the loader against GPU utilisation, a 1-device DDP `medbench train`.
#
#   benchmark/gpu_check.sh                 # on a CUDA machine -> $OUT (default results/gpu/)
#   benchmark/gpu_check.sh --cpu-smoke     # the same steps, tiny, on CPU (no GPU needed)
#   PYTHON=/path/to/python benchmark/gpu_check.sh [extra benchmark/gpu_check.py options]
#
# Each step of benchmark/gpu_check.py runs in its own process under its own time limit, cut to
# what is left of GPU_CHECK_TOTAL_S (default 270 s); the whole script runs under `timeout`.
# Writes $OUT/gpu_check.md and $OUT/gpu_check.json (plus steps/ with each step's json and log)
# and prints the md. Exit 0: the steps ran (their own errors are in the report); 1: none
# measured anything; 2: no GPU; 3: no Python environment. Reads GPU facts with nvidia-smi
# queries only: no GPU setting is changed, nothing is installed or downloaded.
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOTAL_S="${GPU_CHECK_TOTAL_S:-270}"
if [[ -z "${GPU_CHECK_INNER:-}" ]]; then  # the whole check under one hard limit
  GPU_CHECK_INNER=1 exec timeout -k 5 "$((TOTAL_S + 20))" bash "${BASH_SOURCE[0]}" "$@"
fi

OUT="${OUT:-$REPO/results/gpu}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
# no downloads; albumentations' import would otherwise ask PyPI for its latest version
export NVIDIA_SMI MEDBENCH_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
unset MLFLOW_TRACKING_URI
MODE=gpu
ARGS=(--device cuda)
if [[ "${1:-}" == "--cpu-smoke" ]]; then
  MODE=cpu-smoke
  ARGS=(--device cpu --tiny)
  shift
fi
ARGS+=("$@")
mkdir -p "$OUT/steps" || { echo "gpu_check: cannot create $OUT" >&2; exit 1; }
rm -f "$OUT"/steps/*.json "$OUT"/steps/*.rc "$OUT"/steps/*.log "$OUT"/gpu_check.{md,json}

fail() {  # fail <code> <reason>: one line on stderr, and a minimal json beside it
  local reason="${2//\\/\\\\}"
  reason="${reason//\"/\\\"}"
  printf '{"mode": "%s", "exit": {"code": %d, "reason": "%s"}}\n' "$MODE" "$1" "$reason" \
    >"$OUT/gpu_check.json"
  echo "gpu_check: $2" >&2
  exit "$1"
}

if [[ $MODE == gpu ]]; then
  command -v "$NVIDIA_SMI" >/dev/null 2>&1 \
    || fail 2 "no NVIDIA GPU: nvidia-smi not found (this check needs one CUDA GPU; --cpu-smoke runs its CPU smoke mode)"
  if ! smi="$(timeout 20 "$NVIDIA_SMI" --query-gpu=name,driver_version,memory.total --format=csv 2>&1)"; then
    fail 2 "no usable NVIDIA GPU: nvidia-smi failed: $(printf '%s\n' "$smi" | tail -n 1)"
  fi
fi

needs="torch, lightning, timm, segmentation-models-pytorch and medbench's dependencies"
if [[ -n "${PYTHON:-}" ]]; then
  timeout 120 "$PYTHON" -c 'import torch' >/dev/null 2>&1 \
    || fail 3 "PYTHON=$PYTHON cannot import torch (it needs $needs)"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
  PYTHON="$REPO/.venv/bin/python"
elif timeout 120 python3 -c 'import torch, lightning, timm, medbench' >/dev/null 2>&1; then
  PYTHON=python3
else
  fail 3 "no Python environment: no .venv and no python3 with $needs; make one with network access (python3 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 && .venv/bin/pip install -e .), or set PYTHON=/path/to/python"
fi

[[ $MODE == gpu ]] && printf 'nvidia-smi:\n%s\n' "$smi"
echo "gpu_check: $MODE with $PYTHON, results in $OUT (limit ${TOTAL_S} s)"

RESERVE=15  # seconds kept for the report
run_step() {  # run_step <name> <cap s>: one bounded process; "<rc> <seconds> <limit>" to .rc
  local name="$1" left=$((TOTAL_S - SECONDS - RESERVE)) limit="$2" start rc extra=()
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    echo "skip 0 0" >"$OUT/steps/$name.rc"
    echo "gpu_check: step $name skipped: no time left"
    return
  fi
  [[ $name == ddp ]] && extra=(--ddp-timeout "$((limit - 10))")
  start=$SECONDS
  timeout -k 5 "$limit" "$PYTHON" "$REPO/benchmark/gpu_check.py" --step "$name" --out "$OUT" \
    "${ARGS[@]}" "${extra[@]}" >"$OUT/steps/$name.log" 2>&1
  rc=$?
  echo "$rc $((SECONDS - start)) $limit" >"$OUT/steps/$name.rc"
  echo "gpu_check: step $name: exit $rc in $((SECONDS - start)) s (limit $limit s)"
  return "$rc"
}

run_step facts 45
rc=$?
if ((rc != 0)); then
  "$PYTHON" "$REPO/benchmark/gpu_check.py" --step report --out "$OUT" "${ARGS[@]}" >/dev/null
  reason="$(grep -h '^gpu_check: ' "$OUT/steps/facts.log" | tail -n 1)"
  [[ -n $reason ]] || reason="gpu_check: facts step failed (exit $rc): $(tail -n 1 "$OUT/steps/facts.log")"
  echo "$reason" >&2
  exit $((rc == 2 ? 2 : 1))
fi
run_step amp 120
run_step loader 75
run_step ddp 100
echo
"$PYTHON" "$REPO/benchmark/gpu_check.py" --step report --out "$OUT" "${ARGS[@]}"
