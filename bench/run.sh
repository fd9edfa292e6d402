#!/usr/bin/env bash
# The benchmark suite of issue #7: builds collab and collab-bench in release mode, runs
# every scenario against a server started for it, and writes what the runs printed.
#
#   bench/run.sh [small|full]          (default: small)
#
# small: a few seconds per scenario at tiny counts (a smoke run of the whole suite);
# full:  the issue's sizes (100 editors, 19,000 idle connections, 1,000 rooms, ...).
#
# Output, in bench/results/ (ignored by git):
#   <size>.jsonl   every `RESULT {json}` line the scenarios printed, one per line, with
#                  fields added here: bench_size, bench_run (which run), bench_server
#                  (collab / raw / y-websocket-server / hocuspocus), bench_database, and
#                  what was asked for (bench_clients, bench_rate, bench_peak, ...)
#   <size>.md      the tables (bench/report.py)
#   <size>.svg     delivery latency p50/p99 against load (bench/report.py)
#   logs-<size>/   each server's and each bench process's output
#
# Environment:
#   COLLAB_BENCH_DATABASE_URL  postgres://... : notes-durable also runs on PostgreSQL
#                              (point it at a throwaway database: the runs leave data)
#   BENCH_SCENARIOS            which scenarios to run, in order (default: all of
#                              "raw fanout rooms idle notes-durable yjs")
#   BENCH_SKIP_BUILD=1         use the binaries already in target/release
#   FANOUT_RATES, YJS_RATES    override the per-client rates swept (space-separated)
#   COLLAB_BENCH_RUST_LOG      RUST_LOG for the collab server (default: warn, so that
#                              logging does not weigh on the figures)
#
# Every process this script starts is stopped by pid when its run ends, and again on
# exit (trap). A scenario that fails is reported and the others still run; the script
# then exits with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

size=${1:-small}
case "$size" in
  small | full) ;;
  *) echo "usage: bench/run.sh [small|full]" >&2; exit 2 ;;
esac

log() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------------------------------
# Sizes. Rates are per client (operations or updates per second); a list is a sweep, one
# run per rate, which gives the plot its points of latency against load.
# ---------------------------------------------------------------------------------------
if [ "$size" = small ]; then
  seconds=3
  fanout_editors=10;   default_fanout_rates="10"
  rooms_count=50;      rooms_size=5;        rooms_rate=1
  idle_per_process=500; idle_processes=1;   idle_hold=3
  notes_editors=4;     notes_in_flight=8;   notes_history=10000
  yjs_clients=10;      default_yjs_rates="10"
else
  seconds=10
  fanout_editors=100;  default_fanout_rates="10 20 50"
  rooms_count=1000;    rooms_size=5;        rooms_rate=1
  idle_per_process=9500; idle_processes=2;  idle_hold=10
  notes_editors=8;     notes_in_flight=32;  notes_history=100000
  yjs_clients=100;     default_yjs_rates="2 5 10 20 50 100 200 300"
fi
fanout_rates=${FANOUT_RATES:-$default_fanout_rates}
yjs_rates=${YJS_RATES:-$default_yjs_rates}
scenarios=${BENCH_SCENARIOS:-raw fanout rooms idle notes-durable yjs}

# The servers get explicit flags only: a DATABASE_URL or COLLAB_* setting (the flags'
# environment fallbacks) in the caller's environment must not change what is measured.
for variable in $(compgen -e); do
  case "$variable" in
    COLLAB_BENCH_*) ;;
    COLLAB_* | DATABASE_URL) unset "$variable" ;;
  esac
done
server_rust_log=${COLLAB_BENCH_RUST_LOG:-warn}

# Each process may hold at most 20,000 descriptors here (the idle scenario needs
# ~9,500 per client process and ~19,000 in the server); raise the soft limit to that.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "file descriptors per process: $(ulimit -n)"
if [ "$size" = full ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 20000 ]; then
  log "warning: fewer than 20,000 descriptors per process; the idle scenario's server may run out"
fi

# ---------------------------------------------------------------------------------------
# Build, output files, cleanup.
# ---------------------------------------------------------------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release --bin collab --bin collab-bench"
  cargo build --release --bin collab --bin collab-bench
fi
collab="$root/target/release/collab"
bench="$root/target/release/collab-bench"
for binary in "$collab" "$bench"; do
  [ -x "$binary" ] || { log "missing $binary"; exit 1; }
done

results_dir="$root/bench/results"
results="$results_dir/$size.jsonl"
logs="$results_dir/logs-$size"
mkdir -p "$results_dir"
rm -rf "$logs"; mkdir -p "$logs"
: >"$results"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/collab-bench.XXXXXX")
started_pids=()   # every server or client started here and not yet stopped
failures=()       # runs that failed, reported at the end

# alive PID: the process runs (an exited child not yet waited for is a zombie, which
# `kill -0` would still find).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_pid() {
  # SIGTERM, up to 15 s for a graceful exit (collab's shutdown budget is 10 s), then SIGKILL.
  local pid=$1
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "pid $pid still running after SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# forget_pid PID: no longer to be stopped on exit (it has ended and been waited for).
forget_pid() {
  local kept=() other
  for other in "${started_pids[@]}"; do [ "$other" = "$1" ] || kept+=("$other"); done
  started_pids=("${kept[@]}")
}

cleanup() {
  for pid in "${started_pids[@]}"; do
    log "stopping pid $pid"
    stop_pid "$pid"
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Starting servers. Each sets server_pid and server_addr (HOST:PORT) from the first line
# the server prints on stdout.
# ---------------------------------------------------------------------------------------
server_pid=""
server_addr=""

# start_and_read_address NAME PREFIX COMMAND...: runs COMMAND in the background with its
# output in logs/NAME.{out,err} and waits (60 s at most) for a first stdout line
# `PREFIXHOST:PORT`.
start_and_read_address() {
  local name=$1 prefix=$2; shift 2
  "$@" >"$logs/$name.out" 2>"$logs/$name.err" &
  server_pid=$!
  started_pids+=("$server_pid")
  local first=""
  for _ in $(seq 1 600); do
    first=$(head -n 1 "$logs/$name.out" 2>/dev/null || true)
    # Only a complete line counts (the address might still be being written).
    if [ -n "$first" ] && [ "$(wc -l <"$logs/$name.out")" -ge 1 ]; then break; fi
    if ! alive "$server_pid"; then
      log "$name exited before printing its address; see $logs/$name.err"
      tail -n 20 "$logs/$name.err" >&2 || true
      stop_pid "$server_pid"
      return 1
    fi
    sleep 0.1
  done
  case "$first" in
    "$prefix"*) server_addr=${first#"$prefix"}; server_addr=${server_addr%%/*} ;;
    *)
      log "$name: expected a first line starting with '$prefix', got '$first'"
      stop_pid "$server_pid"
      return 1 ;;
  esac
  log "$name listening on $server_addr (pid $server_pid)"
}

# start_collab NAME [SERVE FLAGS...]: a fresh `collab serve` with its own data directory
# (tmp/NAME), which is also where the bench mints its tokens; sets collab_data_dir.
collab_data_dir=""
start_collab() {
  local name=$1; shift
  collab_data_dir="$tmp/$name"
  mkdir -p "$collab_data_dir"
  RUST_LOG="$server_rust_log" start_and_read_address "$name" "collab listening on http://" \
    "$collab" serve --bind 127.0.0.1:0 --data-dir "$collab_data_dir" "$@"
}

# start_raw NAME: the raw tokio-tungstenite relay that is the ceiling for fan-out.
start_raw() {
  start_and_read_address "$1" "raw relay listening on ws://" "$bench" raw-server --bind 127.0.0.1:0
}

# start_node_baseline NAME SCRIPT: one of bench/baselines/*.mjs.
start_node_baseline() {
  start_and_read_address "$1" "listening on ws://" node "$root/bench/baselines/$2" --host 127.0.0.1 --port 0
}

# ---------------------------------------------------------------------------------------
# Running the bench and collecting its RESULT lines.
# ---------------------------------------------------------------------------------------

# collect LOGFILE KEY=VALUE...: appends each `RESULT {json}` line of LOGFILE to the
# results, with KEY=VALUE added as bench_KEY (VALUE parsed as JSON when it is JSON).
collect() {
  python3 - "$@" >>"$results" <<'PY'
import json, sys
path, *pairs = sys.argv[1:]
extra = {}
for pair in pairs:
    key, value = pair.split("=", 1)
    try:
        extra["bench_" + key] = json.loads(value)
    except ValueError:
        extra["bench_" + key] = value
found = 0
with open(path, errors="replace") as lines:
    for line in lines:
        if not line.startswith("RESULT "):
            continue
        try:
            record = json.loads(line[len("RESULT "):])
        except ValueError as error:
            print(f"bench: {path}: unreadable RESULT line ({error})", file=sys.stderr)
            continue
        if not isinstance(record, dict):
            record = {"value": record}
        record.update(extra)
        print(json.dumps(record))
        found += 1
if found == 0:
    print(f"bench: {path}: no RESULT line", file=sys.stderr)
PY
}

# run_in_background LOGFILE COMMAND...: starts COMMAND with its output in LOGFILE, shown
# as it comes (tail), and sets bg_pid. Both are stopped on exit if still running.
# (Run in the background and waited for, rather than in the foreground, so that an
# interrupt reaches the trap at once instead of after the command ends.)
bg_pid=""
tail_pid=""
run_in_background() {
  local logfile=$1; shift
  : >"$logfile"   # exists before tail opens it
  "$@" >"$logfile" 2>&1 &
  bg_pid=$!
  started_pids+=("$bg_pid")
  tail -n +1 -f -s 0.2 --pid="$bg_pid" "$logfile" >&2 &
  tail_pid=$!
  started_pids+=("$tail_pid")
}

# wait_for PID TAIL_PID: waits for a command started by run_in_background; returns its
# exit status.
wait_for() {
  local status=0
  wait "$1" || status=$?
  forget_pid "$1"
  wait "$2" 2>/dev/null || true   # tail ends by itself once the command has (--pid)
  forget_pid "$2"
  return "$status"
}

# run_bench NAME KEY=VALUE... -- COLLAB-BENCH ARGS...: runs collab-bench (its output
# shown and kept in logs/NAME.log), waits for it and collects its RESULT lines.
# A failure is recorded and returns 1; the caller carries on.
run_bench() {
  local name=$1; shift
  local tags=()
  while [ "$1" != "--" ]; do tags+=("$1"); shift; done
  shift
  log "run $name: collab-bench $*"
  local status=0
  run_in_background "$logs/$name.log" "$bench" "$@"
  wait_for "$bg_pid" "$tail_pid" || status=$?
  collect "$logs/$name.log" "run=$name" "${tags[@]}" || true
  if [ "$status" -ne 0 ]; then
    log "run $name FAILED (exit $status)"
    failures+=("$name")
    return 1
  fi
}

# Marks a run failed when its server did not start.
server_failed() { log "run $1 FAILED: its server did not start"; failures+=("$1"); }

# ---------------------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------------------

# raw: the broadcast relay, same workload as fanout (each rate, then a peak run).
scenario_raw() {
  local rate
  for rate in $fanout_rates peak; do
    local name="raw-$rate" load=(--rate "$rate") peak=false
    if [ "$rate" = peak ]; then load=(--peak); peak=true; rate=0; fi
    if start_raw "$name-server"; then
      run_bench "$name" size="$size" server=raw clients="$fanout_editors" rate="$rate" \
        peak="$peak" seconds="$seconds" -- \
        raw --url "ws://$server_addr" --server-pid "$server_pid" \
        --clients "$fanout_editors" "${load[@]}" --seconds "$seconds" || true
      stop_pid "$server_pid"
    else server_failed "$name"; fi
  done
}

# fanout: E editors in one shared project (buffer operations relayed from memory) at
# each rate and at peak; then in one channel's notes (durable updates) at each rate.
scenario_fanout() {
  local target rate
  for target in project notes; do
    local rates=$fanout_rates
    if [ "$target" = project ]; then rates="$rates peak"; fi
    for rate in $rates; do
      local name="fanout-$target-$rate" load=(--rate "$rate") peak=false
      if [ "$rate" = peak ]; then load=(--peak); peak=true; rate=0; fi
      if start_collab "$name-server"; then
        run_bench "$name" size="$size" server=collab database=sqlite target="$target" \
          clients="$fanout_editors" rate="$rate" peak="$peak" seconds="$seconds" -- \
          fanout --url "http://$server_addr" --server-pid "$server_pid" \
          --data-dir "$collab_data_dir" --target "$target" --editors "$fanout_editors" \
          "${load[@]}" --seconds "$seconds" || true
        stop_pid "$server_pid"
      else server_failed "$name"; fi
    done
  done
}

# rooms: many small rooms, each participant moving its cursor.
scenario_rooms() {
  local name="rooms-$rooms_count"
  if start_collab "$name-server"; then
    run_bench "$name" size="$size" server=collab database=sqlite \
      clients="$((rooms_count * rooms_size))" rate="$rooms_rate" seconds="$seconds" -- \
      rooms --url "http://$server_addr" --server-pid "$server_pid" \
      --data-dir "$collab_data_dir" --rooms "$rooms_count" --size "$rooms_size" \
      --rate "$rooms_rate" --seconds "$seconds" || true
    stop_pid "$server_pid"
  else server_failed "$name"; fi
}

# idle: idle_processes client processes at once, each holding idle_per_process
# connections from its own source address (127.0.0.2, 127.0.0.3, ...). Each process
# reports the server's RSS growth as it saw it; since they run together, a poller here
# also records one total: the server's RSS before any client, and at the moment /stats
# showed the most connections (record "idle-total").
scenario_idle() {
  local total=$((idle_per_process * idle_processes))
  local name="idle-$total"
  # The server's default --max-connections (10,000) is below the full size.
  if ! start_collab "$name-server" --max-connections "$((total + 1000))"; then
    server_failed "$name"; return
  fi
  local pid=$server_pid addr=$server_addr
  local rss_before
  rss_before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  local client_pids=() tail_pids=() i
  for i in $(seq 1 "$idle_processes"); do
    local source_ip="127.0.0.$((i + 1))"
    local args=(idle --url "http://$addr" --server-pid "$pid" --data-dir "$collab_data_dir"
                --connections "$idle_per_process" --source-ip "$source_ip"
                --hold-seconds "$idle_hold")
    log "run $name-$i: collab-bench ${args[*]}"
    run_in_background "$logs/$name-$i.log" "$bench" "${args[@]}"
    client_pids+=("$bg_pid")
    tail_pids+=("$tail_pid")
  done
  # The poller ends when every client process has.
  run_in_background "$logs/$name-total.log" python3 -c "$idle_poller" \
    "$addr" "$pid" "$rss_before" "$total" "$idle_processes" "${client_pids[@]}"
  local poller=$bg_pid poller_tail=$tail_pid
  for i in $(seq 1 "$idle_processes"); do
    local status=0
    wait_for "${client_pids[$((i - 1))]}" "${tail_pids[$((i - 1))]}" || status=$?
    collect "$logs/$name-$i.log" "run=$name-$i" size="$size" server=collab database=sqlite \
      clients="$idle_per_process" seconds="$idle_hold" || true
    if [ "$status" -ne 0 ]; then log "run $name-$i FAILED (exit $status)"; failures+=("$name-$i"); fi
  done
  wait_for "$poller" "$poller_tail" || log "the idle poller failed; see $logs/$name-total.log"
  collect "$logs/$name-total.log" "run=$name-total" size="$size" server=collab database=sqlite \
    clients="$total" || true
  stop_pid "$pid"
}

# The idle scenario's poller (python3 -c): ADDR SERVER_PID RSS_BEFORE TOTAL PROCESSES
# CLIENT_PIDS...; polls /stats and the server's /proc status until every client process
# has ended, then prints an `idle-total` RESULT line.
idle_poller=$(cat <<'PY'
import json, os, sys, time, urllib.request
addr, server_pid, rss_before, total, processes, *clients = sys.argv[1:]
def status_kib(key):
    try:
        with open(f"/proc/{server_pid}/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
def running(pid):
    # The clients are the script's children: once they exit they stay zombies ("Z")
    # until the script waits for them.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
# Every RSS sample taken while the most connections were open. The figure is their
# median: the first samples still hold what the connect burst freed (the allocator
# returns it within seconds), and the last may already see the first client process
# closing its connections.
most, at_most = 0, []
while any(running(pid) for pid in clients):
    try:
        with urllib.request.urlopen(f"http://{addr}/stats", timeout=2) as response:
            connections = json.load(response).get("connections", 0)
    except Exception:
        connections = 0
    rss = status_kib("VmRSS:")
    if connections > most:
        most, at_most = connections, []
    if connections == most and rss is not None:
        at_most.append(rss)
    time.sleep(0.5)
before = int(rss_before) if rss_before else None
rss_at_most = sorted(at_most)[len(at_most) // 2] if at_most else None
per = (rss_at_most - before) / most if most and rss_at_most and before is not None else None
print("RESULT " + json.dumps({
    "scenario": "idle-total",
    "connections_requested": int(total),
    "client_processes": int(processes),
    "stats_connections_max": most,
    "server_rss_before_kib": before,
    "server_rss_at_max_kib": rss_at_most,
    "server_rss_at_max_samples": len(at_most),
    "server_rss_at_max_min_kib": min(at_most) if at_most else None,
    "server_rss_at_max_max_kib": max(at_most) if at_most else None,
    "server_rss_peak_kib": status_kib("VmHWM:"),
    "server_kib_per_connection": per,
}))
PY
)

# notes-durable: acknowledged durable updates per second, and the join time of a
# document with a long history, on SQLite and (when configured) PostgreSQL.
scenario_notes_durable() {
  local databases=(sqlite)
  if [ -n "${COLLAB_BENCH_DATABASE_URL:-}" ]; then databases+=(postgres); else
    log "COLLAB_BENCH_DATABASE_URL is not set: notes-durable on SQLite only"
  fi
  local database
  for database in "${databases[@]}"; do
    local name="notes-durable-$database" store=()
    if [ "$database" = postgres ]; then store=(--database-url "$COLLAB_BENCH_DATABASE_URL"); fi
    # A short idle timeout, so the notes unload (and compact) between join phases.
    if start_collab "$name-server" --doc-idle-timeout 1s "${store[@]}"; then
      run_bench "$name" size="$size" server=collab database="$database" \
        clients="$notes_editors" seconds="$seconds" -- \
        notes-durable --url "http://$server_addr" --server-pid "$server_pid" \
        --data-dir "$collab_data_dir" "${store[@]}" --database "$database" \
        --editors "$notes_editors" \
        --in-flight "$notes_in_flight" --seconds "$seconds" --history "$notes_history" || true
      stop_pid "$server_pid"
    else server_failed "$name"; fi
  done
}

# yjs: one y-websocket workload against collab, @y/websocket-server and Hocuspocus.
scenario_yjs() {
  local servers=(collab)
  if command -v node >/dev/null && command -v npm >/dev/null; then
    # The baselines' exact versions are pinned in bench/baselines/package-lock.json;
    # installed once (again when the lock file changes).
    local installed=bench/baselines/node_modules/.package-lock.json
    if [ ! -f "$installed" ] || [ bench/baselines/package-lock.json -nt "$installed" ]; then
      log "npm ci in bench/baselines (@y/websocket-server, @hocuspocus/server)"
      if (cd bench/baselines && npm ci --no-audit --no-fund --silent); then
        servers+=(y-websocket-server hocuspocus)
      else
        log "npm ci failed: yjs runs against collab only"; failures+=("yjs-baselines-npm-ci")
      fi
    else
      servers+=(y-websocket-server hocuspocus)
    fi
  else
    log "node/npm not found: yjs runs against collab only (install Node.js for the baselines)"
  fi
  local server rate
  for server in "${servers[@]}"; do
    for rate in $yjs_rates; do
      local name="yjs-$server-$rate" extra=()
      case "$server" in
        collab)
          start_collab "$name-server" || { server_failed "$name"; continue; }
          # An access token for the y-websocket endpoint, minted from the server's store.
          local token
          if ! token=$("$collab" token create --user yjs-bench --data-dir "$collab_data_dir" \
                         2>>"$logs/$name-server.err"); then
            log "run $name FAILED: collab token create"; failures+=("$name")
            stop_pid "$server_pid"; continue
          fi
          extra=(--url "ws://$server_addr/yjs" --token "$token") ;;
        y-websocket-server)
          start_node_baseline "$name-server" y-websocket-server.mjs || { server_failed "$name"; continue; }
          extra=(--url "ws://$server_addr") ;;
        hocuspocus)
          start_node_baseline "$name-server" hocuspocus.mjs || { server_failed "$name"; continue; }
          extra=(--url "ws://$server_addr" --hocuspocus) ;;
      esac
      run_bench "$name" size="$size" server="$server" clients="$yjs_clients" rate="$rate" \
        seconds="$seconds" -- \
        yjs "${extra[@]}" --server-pid "$server_pid" --clients "$yjs_clients" --docs 1 \
        --rate "$rate" --seconds "$seconds" || true
      stop_pid "$server_pid"
    done
  done
}

for scenario in $scenarios; do
  case "$scenario" in
    raw) scenario_raw ;;
    fanout) scenario_fanout ;;
    rooms) scenario_rooms ;;
    idle) scenario_idle ;;
    notes-durable) scenario_notes_durable ;;
    yjs) scenario_yjs ;;
    *) log "unknown scenario '$scenario'"; failures+=("$scenario") ;;
  esac
done

# ---------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------
log "$(wc -l <"$results") results in $results"
python3 bench/report.py "$results" --markdown "$results_dir/$size.md" --svg "$results_dir/$size.svg"
log "wrote $results_dir/$size.md and $results_dir/$size.svg"

if [ "${#failures[@]}" -gt 0 ]; then
  log "failed runs: ${failures[*]} (logs in $logs)"
  exit 1
fi
log "done"
