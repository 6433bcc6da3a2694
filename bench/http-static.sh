#!/usr/bin/env bash
# bench/http-static.sh: GET /index.html from ringchat (io_uring and epoll backends) and from nginx,
# side by side on this machine, and report requests per server CPU-second (BENCH.md).
#
# What it does:
#   1. builds ringchat and cpu-window (cargo build --release), installs nginx and wrk if missing;
#   2. starts ringchat --io uring, ringchat --io epoll and nginx (one master, one worker) on
#      private loopback ports, all pinned to SERVER_CPU, serving the same directory;
#   3. checks that every server returns the same bytes for /index.html, and that the uring
#      server really holds an io_uring (it falls back to epoll where io_uring is blocked);
#   4. warms each server up, then runs RUNS rounds; in each round every server gets one
#      `wrk -t1 -cCONNECTIONS -dDURATIONs --latency` pinned to CLIENT_CPU, wrapped in cpu-window,
#      which reads the server's utime+stime from /proc before and after. Rounds interleave the
#      servers so a noisy neighbour on this shared machine hits all of them alike;
#   5. prints a Markdown table (per run, medians with min-max, ringchat/nginx ratios) and writes it
#      to bench/results/http-static-<UTC date>.md.
#
# What it does not: open-loop latency (wrk is closed-loop; its percentiles describe this load,
# not a latency SLO), WebSockets, or more than one core per server.
#
# Usage: bench/http-static.sh [--smoke]
#   --smoke (or SMOKE=1)   1 run of 2 s per server, no warm-up, nothing written to bench/results;
#                          exits non-zero if any server answered with errors. For CI.
# Environment (defaults in brackets):
#   RUNS [5]  DURATION [10] (s)  WARMUP [2] (s, 0 = none)  CONNECTIONS [50]
#   SERVER_CPU [0]  CLIENT_CPU [1]
#   SERVERS ["ringchat-uring ringchat-epoll nginx"]   a subset to run only those
#   STATIC_DIR [<repo>/static]   must contain index.html
#   BUILD [1]   0 skips cargo build and uses the binaries already built
#   RINGCHAT_BIN, CPU_WINDOW_BIN [<target>/release/...]   NGINX_BIN [nginx]
#   RESULTS_FILE [bench/results/http-static-<date>.md]   KEEP_TMP [0]   READY_TIMEOUT [20] (s)
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings

SMOKE=${SMOKE:-0}
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "http-static: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $SMOKE == 1 ]]; then
    RUNS=${RUNS:-1}
    DURATION=${DURATION:-2}
    WARMUP=${WARMUP:-0}
fi
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVERS=${SERVERS:-"ringchat-uring ringchat-epoll nginx"}
STATIC_DIR=$(cd "${STATIC_DIR:-$repo/static}" && pwd)
BUILD=${BUILD:-1}
READY_TIMEOUT=${READY_TIMEOUT:-20}
KEEP_TMP=${KEEP_TMP:-0}
NGINX_BIN=${NGINX_BIN:-nginx}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
RINGCHAT_BIN=${RINGCHAT_BIN:-$target_dir/release/ringchat}
CPU_WINDOW_BIN=${CPU_WINDOW_BIN:-$target_dir/release/cpu-window}
# The same budget nginx gets (keepalive_requests): no reconnects inside a run.
KEEP_ALIVE_MAX=100000
PATH_UNDER_TEST=/index.html

log() { echo "http-static: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Processes we start, and their cleanup on every exit path

tmp=$(mktemp -d "${TMPDIR:-/tmp}/http-static.XXXXXX")
declare -a started_pids=()
client_pid= # the load generator now running, if any

# Runs a client command in the background and waits for it, so that a signal to this script
# runs the trap at once instead of after the command's whole duration.
run_client() {
    local status=0
    "$@" &
    client_pid=$!
    wait "$client_pid" || status=$?
    client_pid=
    return "$status"
}

stop_pid() { # pid: TERM, wait up to 5 s (polling), then KILL
    local pid=$1 deadline
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(date +%s) + 5))
    while kill -0 "$pid" 2>/dev/null && (($(date +%s) < deadline)); do
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    if [[ -n $client_pid ]]; then
        # taskset execs cpu-window, which waits on wrk: stop the child first, then the parent.
        for pid in $(pgrep -P "$client_pid" || true) "$client_pid"; do
            stop_pid "$pid"
        done
    fi
    # Oldest first: an nginx master (recorded before its worker) stops its worker itself; a
    # worker stopped first would only be respawned. Workers are listed to catch an orphan.
    for pid in "${started_pids[@]}"; do
        stop_pid "$pid"
    done
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Tools

install_missing() {
    local missing=()
    command -v "$NGINX_BIN" >/dev/null || missing+=(nginx)
    command -v wrk >/dev/null || missing+=(wrk)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} (Debian packages)"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get install -y "${missing[@]}" >&2 ||
        { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y "${missing[@]}" >&2; } ||
        die "could not install ${missing[*]}"
}

for tool in curl taskset awk sort cmp; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
install_missing
[[ -f $STATIC_DIR/index.html ]] || die "$STATIC_DIR/index.html not found (set STATIC_DIR)"
for cpu in "$SERVER_CPU" "$CLIENT_CPU"; do
    taskset -c "$cpu" true 2>/dev/null || die "cannot pin to CPU $cpu (this machine: $(nproc) CPUs)"
done
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"

wants_ringchat=0
for server in $SERVERS; do
    case "$server" in
        ringchat-uring | ringchat-epoll) wants_ringchat=1 ;;
        nginx) ;;
        *) die "unknown server '$server' in SERVERS" ;;
    esac
done

if [[ $BUILD == 1 ]]; then
    packages=(-p ringchat-bench)
    ((wants_ringchat)) && packages=(-p ringchat "${packages[@]}")
    log "cargo build --release ${packages[*]}"
    (cd "$repo" && cargo build --release "${packages[@]}") >&2
fi
[[ -x $CPU_WINDOW_BIN ]] || die "$CPU_WINDOW_BIN missing (build ringchat-bench)"
((wants_ringchat == 0)) || [[ -x $RINGCHAT_BIN ]] || die "$RINGCHAT_BIN missing (build ringchat)"

# ---------------------------------------------------------------------------------------------
# Starting servers

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

declare -A reserved_ports=()
picked_port=
pick_port() { # sets picked_port: free on loopback, in the private range, not handed out before
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 30000))
        [[ -z ${reserved_ports[$port]:-} ]] || continue
        port_in_use "$port" && continue
        reserved_ports[$port]=1
        picked_port=$port
        return 0
    done
    die "no free loopback port found"
}

wait_ready() { # name pid url logfile: poll until the URL answers 2xx, the process dies, or timeout
    local name=$1 pid=$2 url=$3 logfile=$4 deadline
    deadline=$(($(date +%s) + READY_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited before answering $url"
        fi
        if (($(date +%s) >= deadline)); then
            tail -n 20 "$logfile" >&2 || true
            die "$name did not answer $url within ${READY_TIMEOUT}s"
        fi
        sleep 0.05
    done
}

check_affinity() { # name pid: warn if any thread may run outside SERVER_CPU
    local name=$1 pid=$2 task list
    for task in /proc/"$pid"/task/*; do
        list=$(taskset -pc "${task##*/}" 2>/dev/null | awk -F': ' '{print $2}') || continue
        [[ -z $list || $list == "$SERVER_CPU" ]] ||
            log "warning: $name thread ${task##*/} may run on CPUs $list, not only $SERVER_CPU"
    done
}

holds_io_uring() { # pid: does the process have an io_uring file descriptor open?
    local fd
    for fd in /proc/"$1"/fd/*; do
        [[ $(readlink "$fd" 2>/dev/null) == "anon_inode:[io_uring]" ]] && return 0
    done
    return 1
}

declare -A server_pids=()  # name -> "--pid P [--pid Q]" arguments for cpu-window
declare -A server_url=()   # name -> URL under test
declare -A server_label=() # name -> name shown in the tables
declare -A server_command=()

start_ringchat() { # backend
    local backend=$1 name="ringchat-$1" port pid logfile
    pick_port
    port=$picked_port
    logfile=$tmp/$name.log
    local cmd=("$RINGCHAT_BIN" --listen "127.0.0.1:$port" --threads 1 --io "$backend"
        --static "$STATIC_DIR" --keep-alive-max "$KEEP_ALIVE_MAX" --data-dir "$tmp/$name-data")
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$logfile" 2>&1 &
    pid=$!
    started_pids+=("$pid")
    server_url[$name]="http://127.0.0.1:$port$PATH_UNDER_TEST"
    wait_ready "$name" "$pid" "${server_url[$name]}" "$logfile"
    server_pids[$name]="--pid $pid"
    server_label[$name]=$name
    server_command[$name]="taskset -c $SERVER_CPU ringchat --listen 127.0.0.1:PORT --threads 1 --io $backend --static DIR --keep-alive-max $KEEP_ALIVE_MAX"
    if [[ $backend == uring ]] && ! holds_io_uring "$pid"; then
        # ringchat falls back to epoll where io_uring is unavailable (seccomp, sysctl); the
        # numbers are then epoll's, and the table says so.
        log "warning: $name holds no io_uring; it fell back to epoll (see $logfile)"
        server_label[$name]="$name (fell back to epoll!)"
    fi
    if [[ $backend == epoll ]] && holds_io_uring "$pid"; then
        log "warning: $name holds an io_uring although --io epoll was asked for"
    fi
    check_affinity "$name" "$pid"
    log "$name ready on port $port (pid $pid)"
}

start_nginx() {
    local name=nginx port master workers user_line=""
    pick_port
    port=$picked_port
    mkdir -p "$tmp/nginx"
    # As root, workers would otherwise run as nobody and might not reach STATIC_DIR.
    ((EUID == 0)) && user_line="user root root;"
    # sed with a separator that cannot occur in these values; paths are quoted in the template.
    sed -e "s#@TMP@#$tmp/nginx#g" -e "s#@PORT@#$port#g" -e "s#@ROOT@#$STATIC_DIR#g" \
        -e "s#@USER_LINE@#$user_line#g" "$repo/bench/nginx.conf.template" >"$tmp/nginx/nginx.conf"
    "$NGINX_BIN" -t -q -p "$tmp/nginx/" -e "$tmp/nginx/err.log" -c "$tmp/nginx/nginx.conf" ||
        die "nginx rejected $tmp/nginx/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$tmp/nginx/" -e "$tmp/nginx/err.log" \
        -c "$tmp/nginx/nginx.conf" >"$tmp/nginx/stdout.log" 2>&1 &
    master=$!
    started_pids+=("$master")
    server_url[$name]="http://127.0.0.1:$port$PATH_UNDER_TEST"
    wait_ready "$name" "$master" "${server_url[$name]}" "$tmp/nginx/err.log"
    workers=$(pgrep -P "$master" || true)
    [[ $(wc -w <<<"$workers") == 1 ]] || die "expected 1 nginx worker, found: ${workers:-none}"
    server_pids[$name]="--pid $master"
    for worker in $workers; do
        started_pids+=("$worker")
        server_pids[$name]+=" --pid $worker"
    done
    server_label[$name]=$name
    server_command[$name]="taskset -c $SERVER_CPU nginx (1 master + 1 worker, bench/nginx.conf.template)"
    check_affinity "$name" "$master"
    for worker in $workers; do check_affinity "$name worker" "$worker"; done
    log "nginx ready on port $port (master $master, worker $workers)"
}

declare -A server_head_bytes=() # name -> size of the response head, for the report
check_same_bytes() { # name: the body must be the file, byte for byte
    local name=$1
    curl -fsS -D "$tmp/head-$name" -o "$tmp/body-$name" "${server_url[$name]}" ||
        die "$name: GET ${server_url[$name]} failed"
    cmp -s "$tmp/body-$name" "$STATIC_DIR/index.html" ||
        die "$name served different bytes for $PATH_UNDER_TEST than $STATIC_DIR/index.html"
    server_head_bytes[$name]=$(wc -c <"$tmp/head-$name")
}

# ---------------------------------------------------------------------------------------------
# Measuring

wrk_args=(-t1 "-c$CONNECTIONS" "-d${DURATION}s" --latency)

clock_ticks=$(getconf CLK_TCK 2>/dev/null || echo 100)

cpu_busy_ticks() { # cpu: ticks that CPU spent not idle (user nice system irq softirq steal)
    awk -v cpu="cpu$1" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# How busy both CPUs are, in percent, over one second: a machine shared with a compiler or
# another benchmark gives noisy numbers, and the report says so.
preflight_busy_pct() {
    local before0 before1 after0 after1
    before0=$(cpu_busy_ticks "$SERVER_CPU")
    before1=$(cpu_busy_ticks "$CLIENT_CPU")
    sleep 1
    after0=$(cpu_busy_ticks "$SERVER_CPU")
    after1=$(cpu_busy_ticks "$CLIENT_CPU")
    awk -v a="$((after0 - before0))" -v b="$((after1 - before1))" -v hz="$clock_ticks" \
        'BEGIN { printf "%.0f\n", 100 * (a + b) / (2 * hz) }'
}

# Parses one run's output (wrk's report, cpu-window's line, then the server CPU's busy ticks
# over the run as `server_cpu_ticks=N`) into a tab-separated row:
# requests wall_s cpu_s req_per_s req_per_cpu_s busy_pct p50_us p90_us p99_us errors other_pct
parse_run() {
    awk -v hz="$clock_ticks" '
        function micros(text,   value, unit) {
            value = text + 0
            unit = text
            sub(/^[0-9.]+/, "", unit)
            if (unit == "us") return value
            if (unit == "ms") return value * 1e3
            if (unit == "s") return value * 1e6
            if (unit == "m") return value * 6e7
            return -1
        }
        / requests in / { requests = $1 }
        /^ +50% / { p50 = micros($2) }
        /^ +90% / { p90 = micros($2) }
        /^ +99% / { p99 = micros($2) }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ {
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errors += $i + 0
        }
        /^cpu_seconds=/ {
            split($1, c, "="); cpu = c[2]
            split($2, w, "="); wall = w[2]
        }
        /^server_cpu_ticks=/ { split($1, t, "="); core_ticks = t[2] }
        END {
            if (requests == "" || wall == "") exit 1
            rate = requests / wall
            per_cpu = (cpu > 0) ? requests / cpu : 0
            busy = 100 * cpu / wall
            # Time the server core ran anything but the server (other processes, interrupts,
            # hypervisor steal). Tick rounding makes a few percent of noise.
            other = 100 * (core_ticks / hz - cpu) / wall
            if (other < 0) other = 0
            printf "%d\t%.3f\t%.2f\t%.0f\t%.0f\t%.1f\t%.0f\t%.0f\t%.0f\t%d\t%.1f\n",
                requests, wall, cpu, rate, per_cpu, busy, p50, p90, p99, errors + 0, other
        }
    '
}

measure() { # name run -> appends a row to runs.tsv
    local name=$1 run=$2 raw=$tmp/raw-$1-$2.txt row core_before core_after
    core_before=$(cpu_busy_ticks "$SERVER_CPU")
    # shellcheck disable=SC2086 # server_pids holds several words on purpose
    run_client taskset -c "$CLIENT_CPU" "$CPU_WINDOW_BIN" ${server_pids[$name]} -- \
        wrk "${wrk_args[@]}" "${server_url[$name]}" >"$raw" 2>&1 ||
        { cat "$raw" >&2; die "$name run $run: wrk or cpu-window failed"; }
    core_after=$(cpu_busy_ticks "$SERVER_CPU")
    echo "server_cpu_ticks=$((core_after - core_before))" >>"$raw"
    row=$(parse_run <"$raw") || { cat "$raw" >&2; die "$name run $run: could not parse output"; }
    printf '%s\t%s\t%s\n' "$name" "$run" "$row" >>"$tmp/runs.tsv"
    log "$name run $run: $(cut -f1,5,6,11 <<<"$row" | awk -F'\t' '{
        printf "%d requests, %d req per CPU-s, %.1f%% busy, %.1f%% other load", $1, $2, $3, $4 }')"
}

# median (min-max) of column $2 for server $1 in runs.tsv; $3 is the printf format
summary() {
    awk -F'\t' -v name="$1" -v col="$2" '$1 == name { print $col }' "$tmp/runs.tsv" |
        sort -g | awk -v fmt="$3" '
            { v[NR] = $1 }
            END {
                if (NR == 0) { print "-"; exit }
                m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf fmt " (" fmt "–" fmt ")\n", m, v[1], v[NR]
            }'
}

median() { # server column
    awk -F'\t' -v name="$1" -v col="$2" '$1 == name { print $col }' "$tmp/runs.tsv" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1
            print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------------------------------------
# Run

busy_before_pct=$(preflight_busy_pct)
((busy_before_pct < 10)) ||
    log "warning: CPUs $SERVER_CPU and $CLIENT_CPU were ${busy_before_pct}% busy before start; expect noise"

for server in $SERVERS; do
    case "$server" in
        ringchat-uring) start_ringchat uring ;;
        ringchat-epoll) start_ringchat epoll ;;
        nginx) start_nginx ;;
    esac
    check_same_bytes "$server"
done

if ((WARMUP > 0)); then
    for server in $SERVERS; do
        log "warming up $server for ${WARMUP}s"
        run_client taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNECTIONS" "-d${WARMUP}s" \
            "${server_url[$server]}" >/dev/null
    done
fi

: >"$tmp/runs.tsv"
for ((run = 1; run <= RUNS; run++)); do
    for server in $SERVERS; do
        measure "$server" "$run"
    done
done

# ---------------------------------------------------------------------------------------------
# Report

git_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -z $(git -C "$repo" status --porcelain 2>/dev/null) ]] || git_commit+=" (uncommitted changes)"
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
nginx_version=$("$NGINX_BIN" -v 2>&1 | sed 's#.*nginx/##')
wrk_version=$(wrk --version 2>&1 | awk 'NR == 1 { print $2 }' || true)
file_bytes=$(wc -c <"$STATIC_DIR/index.html")

smoke_note=""
[[ $SMOKE == 1 ]] && smoke_note="; SMOKE RUN, not a measurement"

report() {
    local server errors_total=0 heads=()
    echo "# http-static: GET $PATH_UNDER_TEST, ringchat vs nginx"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $git_commit$smoke_note"
    echo "- Machine: ${cpu_model:-unknown CPU}, $(nproc) CPUs, Linux $(uname -r)"
    echo "- Load: wrk $wrk_version \`${wrk_args[*]}\` (closed loop) pinned to CPU $CLIENT_CPU;" \
        "servers pinned to CPU $SERVER_CPU, one thread / one worker each"
    echo "- Runs per server: $RUNS, interleaved round by round; warm-up: ${WARMUP}s per server before the first"
    echo "- File: ${STATIC_DIR/#$repo\//}/index.html, $file_bytes bytes; every server returned these bytes exactly"
    echo "- CPU: server utime+stime from /proc/<pid>/stat over the wrk window (cpu-window);" \
        "nginx counts master + worker. \"busy\" = server CPU / wall; below ~95% the load generator," \
        "not the server, set the pace, and req per CPU-s is the figure to compare." \
        "\"other\" = time CPU $SERVER_CPU spent on anything but the server during the run" \
        "(other processes, interrupts, steal; from /proc/stat); more than a few % means a noisy run"
    echo "- Both CPUs were ${busy_before_pct}% busy in the second before the first run"
    for server in $SERVERS; do
        echo "- ${server_label[$server]}: \`${server_command[$server]}\`"
        heads+=("$server ${server_head_bytes[$server]}")
    done
    echo "- nginx $nginx_version; response head bytes: $(IFS=,; echo "${heads[*]}" | sed 's/,/, /g')"
    echo
    echo "## Per run"
    echo
    echo "| server | run | requests | wall s | server CPU s | req/s | req per CPU-s | busy % | other % | p50 µs | p90 µs | p99 µs | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    while IFS=$'\t' read -r name run requests wall cpu rate per_cpu busy p50 p90 p99 errors other; do
        echo "| ${server_label[$name]} | $run | $requests | $wall | $cpu | $rate | $per_cpu | $busy | $other | $p50 | $p90 | $p99 | $errors |"
        errors_total=$((errors_total + errors))
    done <"$tmp/runs.tsv"
    echo
    echo "## Medians (min–max)"
    echo
    echo "| server | req per CPU-s | req/s | busy % | other % | p50 µs | p90 µs | p99 µs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for server in $SERVERS; do
        echo "| ${server_label[$server]} | $(summary "$server" 7 %.0f) | $(summary "$server" 6 %.0f)" \
            "| $(summary "$server" 8 %.1f) | $(summary "$server" 13 %.1f) | $(summary "$server" 9 %.0f)" \
            "| $(summary "$server" 10 %.0f) | $(summary "$server" 11 %.0f) |"
    done
    if [[ " $SERVERS " == *" nginx "* ]] && [[ $SERVERS == *ringchat* ]]; then
        echo
        echo "## ringchat / nginx (ratio of medians)"
        echo
        echo "| backend | req per CPU-s | req/s |"
        echo "|---|---:|---:|"
        local nginx_per_cpu nginx_rate
        nginx_per_cpu=$(median nginx 7)
        nginx_rate=$(median nginx 6)
        for server in $SERVERS; do
            [[ $server == nginx ]] && continue
            awk -v label="${server_label[$server]}" -v a="$(median "$server" 7)" -v b="$nginx_per_cpu" \
                -v c="$(median "$server" 6)" -v d="$nginx_rate" \
                'BEGIN { printf "| %s | %.2f | %.2f |\n", label, (b > 0) ? a / b : 0, (d > 0) ? c / d : 0 }'
        done
    fi
    if ((errors_total > 0)); then
        echo
        echo "**$errors_total requests failed (non-2xx or socket errors); these runs are not comparable.**"
    fi
}

report >"$tmp/report.md"
cat "$tmp/report.md"

errors_total=$(awk -F'\t' '{ s += $12 } END { print s + 0 }' "$tmp/runs.tsv")
zero_runs=$(awk -F'\t' '$3 == 0' "$tmp/runs.tsv" | wc -l)
if [[ $SMOKE == 1 ]]; then
    log "smoke run: results not written to bench/results"
    ((errors_total == 0 && zero_runs == 0)) || die "smoke run saw $errors_total errors, $zero_runs empty runs"
else
    results_file=${RESULTS_FILE:-$repo/bench/results/http-static-$(date -u +%Y-%m-%d).md}
    # A second run on the same day gets the time too, instead of overwriting the first.
    [[ -n ${RESULTS_FILE:-} || ! -e $results_file ]] ||
        results_file=${results_file%.md}-$(date -u +%H%M%S).md
    mkdir -p "$(dirname "$results_file")"
    cp "$tmp/report.md" "$results_file"
    log "wrote ${results_file/#$repo\//}"
    ((errors_total == 0)) || log "warning: $errors_total requests failed"
fi
