#!/usr/bin/env bash
# A throwaway Dask cluster for tests/test_grade_class.py: a scheduler and two one-thread workers,
# each its own process, on 127.0.0.1 only.
#
#   eval "$(scripts/dask_for_tests.sh start)"   # exports COURSE_TEST_DASK_SCHEDULER (and _DIR)
#   python -m pytest tests/test_grade_class.py
#   scripts/dask_for_tests.sh stop              # stops the processes and deletes their folder
#
# Uses the `dask` command of the active environment (DASK=path/to/dask for another). The workers
# inherit this shell's environment (COURSE_DATA_DIR, COURSE_CACHE_DIR; OMP_NUM_THREADS, default 1).
# Prints only the export line when it works, and what failed (on stderr) when it does not.
# COURSE_TEST_DASK_PORT: first port to try.
set -euo pipefail

fail() { echo "dask_for_tests.sh: $*" >&2; exit 1; }

give_up() {
  echo "dask_for_tests.sh: $1" >&2
  cat "$dir"/*.log >&2 || true
  kill_all
  rm -rf "$dir"
  exit 1
}

# SIGTERM, then SIGKILL after 5 s: a worker whose scheduler is gone can hang while it says goodbye.
kill_all() {
  local pids=()
  for pid_file in "$dir"/*.pid; do
    [ -f "$pid_file" ] && pids+=("$(cat "$pid_file")")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    local running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 1 ] || return 0
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

start() {
  dask=${DASK:-$(command -v dask || true)}
  [ -x "$dask" ] || fail "no 'dask' command: install the course's environment (make setup), or set DASK"
  dir=$(mktemp -d /tmp/course-dask.XXXXXX)
  port=${COURSE_TEST_DASK_PORT:-8786}
  while (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null || (: </dev/tcp/127.0.0.1/"$((port + 1))") 2>/dev/null; do
    port=$((port + 2))
    [ "$port" -lt "$(( ${COURSE_TEST_DASK_PORT:-8786} + 100 ))" ] || { rm -rf "$dir"; fail "no free port from ${COURSE_TEST_DASK_PORT:-8786} on"; }
  done
  address="tcp://127.0.0.1:$port"
  nohup "$dask" scheduler --host 127.0.0.1 --port "$port" --dashboard-address "127.0.0.1:$((port + 1))" \
    >"$dir/scheduler.log" 2>&1 &
  echo $! >"$dir/scheduler.pid"
  for worker in 1 2; do  # one thread each, and one for the notebooks' kernels they start: two share a 2-core machine
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} nohup "$dask" worker "$address" --host 127.0.0.1 --nthreads 1 --nworkers 1 --no-nanny \
      --name "worker-$worker" --local-directory "$dir/worker-$worker" >"$dir/worker-$worker.log" 2>&1 &
    echo $! >"$dir/worker-$worker.pid"
  done
  for _ in $(seq 120); do
    [ "$(grep -l "Starting established connection\|Registered to" "$dir"/worker-*.log 2>/dev/null | wc -l)" = 2 ] && break
    sleep 0.5
  done
  [ "$(grep -l "Starting established connection\|Registered to" "$dir"/worker-*.log 2>/dev/null | wc -l)" = 2 ] ||
    give_up "the scheduler and two workers did not come up on $address within 60 s:"
  echo "export COURSE_TEST_DASK_SCHEDULER=$address COURSE_TEST_DASK_DIR=$dir"
}

stop() {
  dir=${COURSE_TEST_DASK_DIR:-}
  [ -f "$dir/scheduler.pid" ] || fail "COURSE_TEST_DASK_DIR is not a folder made by 'start' (got '${dir}')"
  kill_all
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) fail "usage: eval \"\$(scripts/dask_for_tests.sh start)\" ... scripts/dask_for_tests.sh stop" ;;
esac
