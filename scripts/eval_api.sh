#!/usr/bin/env bash
# An outside evaluation tool against the playground's OpenAI-compatible API (docs/api.md): lm-evaluation-harness's
# `local-chat-completions` model on a small local task (scripts/eval_tasks/playground_arith.yaml, 16 arithmetic
# questions, greedy), for the base model and one adapter at several λ, all through app.py's /v1 on loopback.
#
#   bash scripts/eval_api.sh [ADAPTER] [LAMBDAS]        e.g. bash scripts/eval_api.sh upbeat-b0.1 "0.5 1 2"
#
# lm-eval goes into its own virtual environment ($EVAL_VENV, outside the repo) that reuses the app's packages
# (torch, transformers, datasets) through a .pth file instead of downloading them again. Results: $OUT (default
# /tmp/playground-eval), one lm-eval output folder per model, and a summary table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ADAPTER="${1:-upbeat-b0.1}"
LAMBDAS="${2:-0.5 1 2}"
LM_EVAL_VERSION=0.4.13
EVAL_VENV="${EVAL_VENV:-$HOME/.cache/controllability-playground/lm-eval-venv}"
OUT="${OUT:-/tmp/playground-eval}"
[ -x .venv/bin/python ] || bash scripts/setup.sh
if ! "$EVAL_VENV/bin/python" -c "import lm_eval, tenacity" 2>/dev/null; then
  .venv/bin/python -m venv "$EVAL_VENV"
  purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  .venv/bin/python -c "$purelib" > "$("$EVAL_VENV/bin/python" -c "$purelib")/playground-venv.pth"
  "$EVAL_VENV/bin/pip" install -q "lm-eval[api]==$LM_EVAL_VERSION"
fi
mkdir -p "$OUT"
PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
GRADIO_SERVER_PORT=$PORT GRADIO_SERVER_NAME=127.0.0.1 .venv/bin/python app.py > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
.venv/bin/python - "$URL" <<'PY'
import sys, time, urllib.request
for _ in range(300):  # the UI (and /v1/models) is up within seconds; the model loads behind it
    try:
        urllib.request.urlopen(sys.argv[1] + "/v1/models", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(1)
sys.exit("the app did not start; see the server log")
PY
run() {  # model, extra generation kwargs (the realignment knobs travel as extra body fields)
  local name="$1" extra="$2"
  echo "== lm_eval on $name ${extra:+($extra)}"
  "$EVAL_VENV/bin/lm_eval" --model local-chat-completions \
    --model_args "model=$name,base_url=$URL/v1/chat/completions,num_concurrent=4,max_retries=3,tokenized_requests=False" \
    --tasks playground_arith --include_path scripts/eval_tasks --apply_chat_template \
    ${extra:+--gen_kwargs "$extra"} --output_path "$OUT/${name}${extra:+_$extra}" --log_samples
}
run base ""
for lam in $LAMBDAS; do
  run "$ADAPTER" "lambda=$lam"
done
.venv/bin/python - "$OUT" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).rglob("results_*.json")):
    r = json.loads(f.read_text())
    m = r["results"]["playground_arith"]
    rows.append((f.parent.parent.name, m.get("exact_match,last_number"), m.get("exact_match_stderr,last_number")))
print("\n| model (λ) | exact_match | stderr |\n|---|---|---|")
for name, em, se in rows:
    print(f"| {name} | {em:.3f} | {se:.3f} |")
PY
