#!/usr/bin/env bash
# The aarch64 check, from scratch or from the cache: installs the host tools, builds the arm64
# sysroot, cross-builds and runs the native tests under qemu (default OpenSSL paths and
# OPENSSL_armcap=0), cross-builds the wheel, prepares the qemu venv, runs the Python tests there
# and `edgeguard bench --quick` (JSON labelled emulated). Prints a summary; exits non-zero if any
# step failed.
#
#   tools/aarch64/run-all.sh [--no-bench] [-- PYTEST_ARGS...]
#
# Cache: .cache/aarch64 (git-ignored) or $EDGEGUARD_AARCH64_CACHE. Bench JSON:
# results/bench-aarch64-emulated.json or $EDGEGUARD_AARCH64_BENCH_OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"

bench=1
pytest_args=()
while (($#)); do
  case $1 in
    --no-bench) bench=0 ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "usage: $0 [--no-bench] [-- PYTEST_ARGS...]" >&2; exit 2 ;;
  esac
  shift
done

names=() results=() times=()
failed=0
step() {  # step NAME COMMAND...: runs it, records the outcome; later steps still run when useful
  local name=$1 start rc
  shift
  echo
  echo "=== aarch64: $name"
  start=$(date +%s)
  "$@"
  rc=$?
  names+=("$name")
  times+=("$(($(date +%s) - start))s")
  if ((rc == 0)); then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
  return $rc
}

t0=$(date +%s)
step "host packages" "$here/install-deps.sh" &&
  step "arm64 sysroot" "$here/make-sysroot.sh" && {
  step "native tests under qemu" "$here/native-tests.sh"
  step "cross-built wheel" "$here/build-wheel.sh" &&
    step "qemu venv" "$here/make-venv.sh" && {
    step "pytest under qemu" "$here/pytest.sh" "${pytest_args[@]}"
    if ((bench)); then
      step "bench --quick under qemu" "$here/bench.sh" "${EDGEGUARD_AARCH64_BENCH_OUT:-$ROOT/results/bench-aarch64-emulated.json}"
    fi
  }
}

echo
echo "=== aarch64 summary (qemu-user, QEMU_CPU=$QEMU_CPU; emulated: correctness only, not speed)"
for i in "${!names[@]}"; do
  printf '  %-28s %-18s %6s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
echo "  total $(($(date +%s) - t0))s; cache: $CACHE"
if ((failed)); then
  echo "aarch64: FAILED"
  exit 1
fi
echo "aarch64: all steps passed"
