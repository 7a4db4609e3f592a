#!/usr/bin/env bash
# Runs the libFuzzer targets of a fuzz build (make fuzz) and prints, per target, the
# executions, the time, exec/s and what was found.
#
#   scripts/fuzz.sh BUILD_DIR [TARGET...]     (default: every build_dir/fuzz/fuzz-*)
#
# FUZZ_RUNS (default 1000000) executions per target; FUZZ_JOBS (default 1) targets at
# once; FUZZ_TIMEOUT_S (default 10) per input. Each target starts from its seed corpus
# and regressions (tests/fuzz/{corpus,regressions}/NAME, read only) and keeps what it
# learns in BUILD_DIR/fuzz-corpus/NAME. A crash, leak, UBSan report, timeout or
# out-of-memory input is saved in BUILD_DIR/fuzz-findings/NAME/ (copy it into
# tests/fuzz/regressions/NAME/ once the bug is fixed); the script then exits 1.
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:?usage: scripts/fuzz.sh BUILD_DIR [TARGET...]}"
shift
build_dir="$(cd "${build_dir}" && pwd)"
runs="${FUZZ_RUNS:-1000000}"
jobs="${FUZZ_JOBS:-1}"
timeout_s="${FUZZ_TIMEOUT_S:-10}"

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  for binary in "${build_dir}"/fuzz/fuzz-*; do targets+=("$(basename "${binary}" | sed 's/^fuzz-//')"); done
fi

run_one() {
  local name="$1"
  local binary="${build_dir}/fuzz/fuzz-${name}"
  local work="${build_dir}/fuzz-corpus/${name}"
  local findings="${build_dir}/fuzz-findings/${name}"
  local log="${build_dir}/fuzz-logs/${name}.log"
  mkdir -p "${work}" "${findings}" "$(dirname "${log}")"
  local dirs=("${work}" "${root_dir}/tests/fuzz/corpus/${name}")
  [ -d "${root_dir}/tests/fuzz/regressions/${name}" ] && dirs+=("${root_dir}/tests/fuzz/regressions/${name}")
  local rc=0
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "${binary}" -runs="${runs}" -timeout="${timeout_s}" -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="${findings}/" "${dirs[@]}" >"${log}" 2>&1 || rc=$?
  local done_line execs seconds per_s result
  done_line="$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "${log}" | tail -n 1 || true)"
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "${log}" | awk '{print $2}' | tail -n 1 || true)"
  per_s="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "${log}" | awk '{print $2}' | tail -n 1 || true)"
  seconds="$(echo "${done_line}" | awk '{print $5}')"
  if [ "${rc}" -eq 0 ]; then
    result="ok"
  else
    result="FOUND: $(grep -oE '(ERROR: [A-Za-z]+: [a-z-]+|runtime error: [^:]*|fuzz invariant violated|ALARM: working on the last Unit for|out-of-memory|deadly signal)' "${log}" | head -n 1 || echo "exit ${rc}"); $(ls -1 "${findings}" | head -n 1) (log ${log})"
  fi
  printf '%-18s %10s runs %7s s %8s exec/s  %s\n' "${name}" "${execs:-?}" "${seconds:-?}" "${per_s:-?}" "${result}"
  [ "${rc}" -eq 0 ]
}
export -f run_one
export build_dir root_dir runs timeout_s

echo "fuzz: ${#targets[@]} targets, ${runs} runs each, ${jobs} at a time (logs in ${build_dir}/fuzz-logs)"
status=0
printf '%s\n' "${targets[@]}" | xargs -P "${jobs}" -I{} bash -c 'run_one "$@"' _ {} || status=1
exit "${status}"
