#!/usr/bin/env bash
# The main job of `make demo`: the embedded local demo.
#  1. generates a tiny random DeepSeek-V3-architecture model (FP8 block-scaled weights,
#     MTP layer, byte-level BPE tokenizer) in the Hugging Face layout;
#  2. generates from it once with `moeserve-worker generate`;
#  3. runs deploy/examples/tiny-cpu.yaml with `moeserve-operator local`: each group's
#     ranks as local worker processes behind one OpenAI endpoint;
#  4. sends a completion and a streaming chat request with curl, shows metrics, and
#     stops everything by PID.
set -euo pipefail
build_dir="$(cd "${1:-build}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${root}/.cache/demo"
model="${work}/tiny-deepseek-v3-fp8"
port="${MOESERVE_DEMO_PORT:-8000}"
bin="${build_dir}/bin"
mkdir -p "${work}/logs"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f "${model}/config.json" ]; then
  step "generating a tiny DeepSeek-V3 model (fp8) in ${model}"
  "${bin}/moeserve-make-tiny-model" --out "${model}" --arch deepseek_v3 --precision fp8 --seed 7
fi

step "moeserve-worker generate"
"${bin}/moeserve-worker" generate --model "${model}" --prompt "The quick brown fox" \
  --max-tokens 12 --threads 2 --json

step "moeserve-operator local -f deploy/examples/tiny-cpu.yaml (endpoint :${port})"
"${bin}/moeserve-operator" local -f "${root}/deploy/examples/tiny-cpu.yaml" --model "${model}" \
  --port "${port}" --logs-dir "${work}/logs" --log-format logfmt &
local_pid=$!
cleanup() { kill -TERM "${local_pid}" 2>/dev/null || true; wait "${local_pid}" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${local_pid}" 2>/dev/null; then echo "local platform exited" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:${port}/readyz" >/dev/null

step "POST /v1/completions"
curl -fsS "http://127.0.0.1:${port}/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":"Once upon a time","max_tokens":16,"temperature":0}'
echo

step "POST /v1/chat/completions (stream)"
curl -fsSN "http://127.0.0.1:${port}/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model":"tiny","messages":[{"role":"user","content":"Say hello"}],"max_tokens":12,"stream":true,"stream_options":{"include_usage":true}}'

step "worker metrics (rank 0 of group 0)"
curl -fsS "http://127.0.0.1:8100/metrics" | grep -E '^moeserve_(prompt|generation)_tokens_total|^moeserve_kv_cache_usage_ratio|^moeserve_worker_info' || true

step "stopping (SIGTERM to PID ${local_pid})"
cleanup
trap - EXIT
echo "demo finished; worker logs are in ${work}/logs"
