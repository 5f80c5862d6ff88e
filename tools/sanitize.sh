#!/usr/bin/env bash
# Builds the engine, the native tests and the Python module with AddressSanitizer and
# UndefinedBehaviorSanitizer, then runs (a) ctest and (b) the Python suite against that module.
# Usage: [PYTHON=python3] tools/sanitize.sh [pytest args...]
#   PYTHON: an interpreter with pybind11 and the test dependencies (.[test,bench]) installed.
# Build output goes to build/sanitize (git-ignored). Needs g++ with libasan/libubsan, cmake, OpenSSL 3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build/sanitize
python=${PYTHON:-python3}

# --- What ASan itself breaks, in this one place --------------------------------------------------
# detect_leaks=0: CPython and its extension modules keep allocations alive until exit on purpose.
# handle_segv=0: the guard-page and read-only-page tests expect the child to die of SIGSEGV; ASan's
#   handler would turn that into a report and exit code 1. Out-of-bounds accesses are still caught by
#   the shadow-memory checks, which do not need the handler.
# log_path: reports go to files (pytest captures stderr, and a child's stderr is often discarded);
#   the script fails if any report was written.
logs=$build/reports
asan_options="detect_leaks=0:handle_segv=0:log_path=$logs/asan"
# The interpreter is not instrumented, so the ASan runtime is preloaded; libstdc++ with it, because
# ASan resolves the real __cxa_throw when it starts and python itself does not link libstdc++
# (without it the first C++ exception fails ASan's "real___cxa_throw != 0" check).
preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
ubsan_options="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
# Tests ASan cannot run:
# - ASan's mlock/munlock interceptors do nothing and report success, so whether the pages are
#   really locked (VmFlags "lo"), and mlock failing above RLIMIT_MEMLOCK, cannot be observed.
# - ASan reserves terabytes of address space for its shadow, so a test that limits RLIMIT_AS to
#   make thread creation fail cannot start its child.
# - With log_path set, ASan creates the report directory (mkdir) in every process it starts in, which
#   the strace-based "loading writes no file" test rightly counts as a write.
# - The residue scans read every readable mapping of a child process, and under ASan that includes
#   terabytes of shadow memory; ASan also replaces glibc's malloc, so glibc's perturb byte
#   (harden_process(wipe_freed=True)) wipes nothing there. tests/test_residue.py runs unsanitized.
#   For the same reason harden_process(wipe_freed=True) rightly raises under ASan (mallopt is ASan's).
# - ASan's allocator (redzones, quarantine) adds ~2 MB to a strict load's peak RSS, past the 16 MB of
#   slack the strict-RSS test allows (55.5 MB against 53.6 MB; the same at commit 478eaa1).
deselect=(
  "tests/test_secure_memory.py::test_mapping_is_page_aligned_locked_undumpable_and_wiped_on_fork"
  "tests/test_secure_memory.py::test_mlock_failure_is_reported_not_fatal_without_cap_ipc_lock"
  "tests/test_secure_memory.py::test_unprivileged_load_of_a_model_above_the_mlock_limit_works_and_says_so"
  "tests/test_native_safety.py::test_failed_thread_start_degrades_to_fewer_threads_instead_of_aborting"
  "tests/test_runtime_nodisk.py::test_loading_opens_no_file_for_writing"
  "tests/test_residue.py"
  "tests/test_secure_memory.py::test_hardened_mode_needs_a_hardened_process_and_harden_process_reports_it"
  "tests/test_runtime.py::test_hardened_mode_matches_plain_onnxruntime"
  "tests/test_runtime.py::test_strict_peak_rss_is_about_one_model_size"
)
# --------------------------------------------------------------------------------------------------

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEDGEGUARD_SANITIZE=ON -DEDGEGUARD_BUILD_TESTS=ON -DEDGEGUARD_BUILD_MODULE=ON \
  -DPython_EXECUTABLE="$(command -v "$python")" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" --parallel 2

echo "== ctest (ASan + UBSan, leak checks on)"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="$ubsan_options" ctest --test-dir "$build" --output-on-failure

# The suite imports edgeguard from a staged copy of src/edgeguard holding the sanitized module. It
# runs in a venv of its own whose .pth lists the stage first, then the site directories of $python
# for the dependencies: their .pth files are not processed there, so an editable install of
# edgeguard in $python cannot redirect the import to its own (unsanitized) module.
rm -rf "$logs"
mkdir -p "$logs"
stage=$build/stage
rm -rf "$stage"
mkdir -p "$stage"
cp -r "$root/src/edgeguard" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cp "$build"/_core*.so "$stage/edgeguard/"
venv=$build/venv
rm -rf "$venv"
"$python" -m venv --without-pip "$venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
{
  echo "$stage"
  "$python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))'
} >"$site/_edgeguard_sanitize.pth"

echo "== pytest against the sanitized module"
export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
LD_PRELOAD=$preload ASAN_OPTIONS=$asan_options UBSAN_OPTIONS=$ubsan_options
"$venv/bin/python" -c 'import edgeguard._core as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__' "$stage"
args=()
for t in "${deselect[@]}"; do args+=(--deselect "$t"); done
cd "$root"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -q "${args[@]}" "$@" || status=$?
if compgen -G "$logs/*" >/dev/null; then
  echo "== sanitizer reports" >&2
  cat "$logs"/* >&2
  status=1
fi
exit $status
