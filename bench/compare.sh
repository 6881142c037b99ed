#!/usr/bin/env bash
# Runs Herald and nchan side by side, as the README's Performance section
# reports them: each server pinned to CPU 0 and started fresh for every run,
# the load generator (herald bench) pinned to CPU 1, 64-byte messages, plain
# WebSocket subscribers, publishes through each server's publish route. Three
# rounds alternate the two servers; each figure is the median of its three
# runs, and each ratio is Herald's median over nchan's. The durable
# scenarios compare Herald with itself instead: history.file set against
# history in memory, 16 concurrent publishers, on one topic with 1 and with
# 1,000 subscribers (durable1, durable1000), or over 16 topics with one
# subscriber each (durable16).
#
#   bench/compare.sh            # all scenarios, three rounds
#   ROUNDS=1 bench/compare.sh   # a quick look
#   SCENARIOS="steady burst" bench/compare.sh
#       # some of: steady steady500 burst idle10k durable1 durable1000 durable16
#
# It installs nothing. It needs Go, nginx with the nchan module (Debian:
# nginx-light and libnginx-mod-nchan) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-3}
missing=()
command -v taskset >/dev/null || missing+=("taskset (Debian: util-linux)")
command -v nginx >/dev/null || missing+=("nginx (Debian: nginx-light)")
[[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]] || missing+=("the nchan module (Debian: libnginx-mod-nchan)")
if ((${#missing[@]})); then
  printf 'bench/compare.sh needs, and did not find:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  printf 'On Debian: apt-get install nginx-light libnginx-mod-nchan util-linux\n' >&2
  exit 1
fi
if (($(nproc) < 2)); then
  echo "bench/compare.sh needs two CPUs: the server on one, the load on the other" >&2
  exit 1
fi
# Every connection is a file descriptor, in the server and in the load.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 10500)); then
  echo "bench/compare.sh needs 10,500 open files per process; the limit here is $(ulimit -n)" >&2
  exit 1
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/herald" .

# shellcheck source=bench/ports.sh
source bench/ports.sh

# start_server NAME PORT: starts one server on CPU 0 and sets server_pid,
# ws_url and publish_url. herald-file is Herald with a fresh history file.
start_server() {
  local name=$1 port=$2
  case "$name" in
    herald | herald-file)
      config=bench/herald.yaml
      if [[ "$name" == herald-file ]]; then
        config="$work/herald-file.yaml"
        rm -f "$work/history.db" "$work/history.db-journal"
        { cat bench/herald.yaml; printf 'history:\n  file: %s\n' "$work/history.db"; } >"$config"
      fi
      HERALD_PORT=$port taskset -c 0 "$work/herald" -config "$config" >/dev/null 2>"$work/herald.log" &
      ws_url="ws://127.0.0.1:$port/ws"
      publish_url="http://127.0.0.1:$port/notify"
      ;;
    nchan)
      rm -rf "$work/nginx" && mkdir -p "$work/nginx"
      sed "s/PORT/$port/; s#PREFIX#$work/nginx#g" bench/nchan.conf >"$work/nginx/nginx.conf"
      taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
      ws_url="ws://127.0.0.1:$port/sub"
      publish_url="http://127.0.0.1:$port/pub"
      ;;
  esac
  server_pid=$!
  wait_port "$port"
  # nginx forks its worker: measure the worker, which does the work.
  if [[ "$name" == nchan ]]; then
    for _ in $(seq 100); do
      worker=$(pgrep -P "$server_pid" | head -n1 || true)
      [[ -n "$worker" ]] && break
      sleep 0.05
    done
    measured_pid=$worker
  else
    measured_pid=$server_pid
  fi
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# The scenarios: name, then herald bench flags.
scenarios=(
  "steady|-subscribers 1000 -messages 1000 -rate 100 -publishers 1"
  "steady500|-subscribers 500 -messages 1000 -rate 100 -publishers 1"
  "burst|-subscribers 1000 -messages 2000 -publishers 8"
  "idle10k|-subscribers 10000 -messages 1 -publishers 1 -connect-concurrency 200"
  "durable1|-subscribers 1 -messages 8000 -publishers 16"
  "durable1000|-subscribers 1000 -messages 4000 -publishers 16"
  "durable16|-subscribers 16 -messages 8000 -publishers 16 -topics 16"
)

# compared_with SCENARIO: the server Herald is measured against in it.
compared_with() {
  if [[ "$1" == durable* ]]; then echo herald-file; else echo nchan; fi
}

selected=${SCENARIOS:-steady steady500 burst idle10k durable1 durable1000 durable16}
results="$work/results"
: >"$results"
for round in $(seq "$rounds"); do
  for entry in "${scenarios[@]}"; do
    scenario=${entry%%|*}
    flags=${entry#*|}
    [[ " $selected " == *" $scenario "* ]] || continue
    # Alternate which server goes first, round by round.
    other=$(compared_with "$scenario")
    order=(herald "$other")
    ((round % 2 == 0)) && order=("$other" herald)
    for server in "${order[@]}"; do
      port=$(free_port)
      start_server "$server" "$port"
      # shellcheck disable=SC2086 # flags are words on purpose
      out=$(taskset -c 1 "$work/herald" bench -ws "$ws_url" -publish "$publish_url" -size 64 -pid "$measured_pid" $flags)
      stop_server
      echo "$out" | sed "s/^/$round $scenario $server /" >>"$results"
      # Publishes a second, which herald bench leaves to be worked out.
      echo "$out" | awk -F= -v p="$round $scenario $server " '
        $1 == "acknowledged" { a = $2 } $1 == "publish_seconds" { s = $2 }
        END { if (s > 0) printf "%spublishes_per_second=%.0f\n", p, a / s }' >>"$results"
      echo "round $round $scenario $server: $(echo "$out" | grep -E '^(lost|deliveries_per_second|latency_p99_ms|arrival_p99_ms|load_cpu_busy|server_cpu_us_per_delivery|connect_seconds|server_connect_cpu_us_per_connection|server_rss_per_connection_kib)=' | tr '\n' ' ')" >&2
    done
  done
done

median() { # scenario server key
  awk -v s="$1" -v v="$2" -v k="$3" '$2==s && $3==v { split($4, kv, "="); if (kv[1]==k) print kv[2] }' "$results" |
    sort -g | awk '{ a[NR]=$1 } END { if (NR) print a[int((NR+1)/2)]; else print "nan" }'
}
sum() { # scenario server key
  awk -v s="$1" -v v="$2" -v k="$3" '$2==s && $3==v { split($4, kv, "="); if (kv[1]==k) t+=kv[2] } END { print t+0 }' "$results"
}

row() { # label scenario key
  local h n
  [[ " $selected " == *" $2 "* ]] || return 0
  h=$(median "$2" herald "$3")
  n=$(median "$2" nchan "$3")
  printf '| %s | %s | %s | %s |\n' "$1" "$h" "$n" "$(awk -v h="$h" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", h/n; else print "-" }')"
}

echo
echo "Medians of $rounds rounds."
if [[ " $selected " == *" steady"* || " $selected " == *" burst "* || " $selected " == *" idle10k "* ]]; then
  echo
  echo "Ratio = Herald / nchan (lower is better, except deliveries/s):"
  echo
  echo "| scenario | Herald | nchan | Herald/nchan |"
  echo "|---|---|---|---|"
  row "1,000 subscribers, 100 publishes/s: server CPU µs per delivery" steady server_cpu_us_per_delivery
  row "same: p99 publish-to-receive (ms)" steady latency_p99_ms
  row "same: p50 of each message's first delivery (ms)" steady first_delivery_p50_ms
  row "same: p50 of each message's last delivery (ms)" steady last_delivery_p50_ms
  row "same: p99 publish-to-arrival at the subscriber's socket (ms)" steady arrival_p99_ms
  row "same: p50 of each message's last arrival (ms)" steady arrival_last_delivery_p50_ms
  row "same: the load generator's core, share busy" steady load_cpu_busy
  row "500 subscribers, 100 publishes/s: p99 publish-to-receive (ms)" steady500 latency_p99_ms
  row "same: p99 publish-to-arrival (ms)" steady500 arrival_p99_ms
  row "same: server CPU µs per delivery" steady500 server_cpu_us_per_delivery
  row "same: the load generator's core, share busy" steady500 load_cpu_busy
  row "1,000 subscribers, 2,000 publishes by 8 publishers: deliveries/s" burst deliveries_per_second
  row "same: server CPU µs per delivery" burst server_cpu_us_per_delivery
  row "same: p99 publish-to-receive (ms)" burst latency_p99_ms
  row "same: p99 publish-to-arrival (ms)" burst arrival_p99_ms
  row "same: the load generator's core, share busy" burst load_cpu_busy
  row "10,000 subscribers: seconds to connect all" idle10k connect_seconds
  row "same: server CPU µs per connection while connecting" idle10k server_connect_cpu_us_per_connection
  row "same: resident memory per connection (KiB)" idle10k server_rss_per_connection_kib
fi
if [[ " $selected " == *" durable"* ]]; then
  echo
  echo "History in memory against history.file (ratio = file / memory; higher is better):"
  echo
  echo "| scenario | memory | file | file/memory |"
  echo "|---|---|---|---|"
  durable_row() { # label scenario
    local m f
    [[ " $selected " == *" $2 "* ]] || return 0
    m=$(median "$2" herald publishes_per_second)
    f=$(median "$2" herald-file publishes_per_second)
    printf '| %s | %s | %s | %s |\n' "$1" "$m" "$f" "$(awk -v m="$m" -v f="$f" 'BEGIN { if (m > 0) printf "%.2f", f/m; else print "-" }')"
  }
  durable_row "16 publishers, 1 subscriber: publishes/s" durable1
  durable_row "16 publishers, 1,000 subscribers: publishes/s" durable1000
  durable_row "16 publishers on 16 topics, 1 subscriber each: publishes/s" durable16
fi
echo
for scenario in $selected; do
  for server in herald "$(compared_with "$scenario")"; do
    printf 'lost in %s, %s, all rounds: %s of %s (duplicated: %s)\n' "$scenario" "$server" \
      "$(sum $scenario $server lost)" "$(sum $scenario $server expected_deliveries)" "$(sum $scenario $server duplicated)"
  done
done
