#!/usr/bin/env bash
# Runs herald bench against two Herald instances over one Redis, and
# against two instances over a Redis Cluster of three masters, in one run,
# as bench/PERFORMANCE.md reports them. Every Herald instance and every
# redis-server is pinned to CPU 0 and the load generator to CPU 1; each
# setup is started fresh for every run, Redis with appendonly yes and
# appendfsync everysec. Rounds alternate which setup goes first; each
# figure is the median of its rounds, and each ratio is the cluster's
# median over one Redis's. Subscribers and messages spread over TOPICS
# topics, so that the cluster's masters share them.
#
#   bench/redis_cluster.sh                     # three rounds
#   ROUNDS=1 SUBSCRIBERS=20 MESSAGES=100 bench/redis_cluster.sh   # a quick look that it works
#
# On a machine of two cores, all three masters and both instances share
# one core: the figures show what the cluster costs, not how it scales.
# It installs nothing. It needs Go, redis-server and redis-cli (Debian:
# redis-server, redis-tools) and taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-3}
subscribers=${SUBSCRIBERS:-1000}
messages=${MESSAGES:-4000}
publishers=${PUBLISHERS:-16}
topics=${TOPICS:-16}
missing=()
command -v taskset >/dev/null || missing+=("taskset (Debian: util-linux)")
command -v redis-server >/dev/null || missing+=("redis-server (Debian: redis-server)")
command -v redis-cli >/dev/null || missing+=("redis-cli (Debian: redis-tools)")
if ((${#missing[@]})); then
  printf 'bench/redis_cluster.sh needs, and did not find:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
if (($(nproc) < 2)); then
  echo "bench/redis_cluster.sh needs two CPUs: the servers on one, the load on the other" >&2
  exit 1
fi
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/herald" .

# shellcheck source=bench/ports.sh
source bench/ports.sh

# start_redis DIR PORT [ARGS...]: one redis-server on CPU 0.
start_redis() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" \
    --appendonly yes --appendfsync everysec --daemonize no "$@" >"$dir/log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}

# start_setup NAME: starts Redis as NAME has it (single or cluster) and two
# Herald instances over it, and sets ws_urls and publish_urls.
start_setup() {
  local name=$1 redis_yaml port
  rm -rf "$work/redis" && mkdir -p "$work/redis"
  case "$name" in
    single)
      port=$(free_port)
      start_redis "$work/redis/single" "$port"
      redis_yaml="  url: redis://127.0.0.1:$port/0"
      ;;
    cluster)
      local addrs=()
      for node in 1 2 3; do
        port=$(free_port)
        start_redis "$work/redis/$node" "$port" --cluster-enabled yes --cluster-config-file nodes.conf \
          --cluster-port "$(free_port)"
        addrs+=("127.0.0.1:$port")
      done
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$work/redis/create.log"
      for node in 1 2 3; do
        for _ in $(seq 200); do
          grep -q "Cluster state changed: ok" "$work/redis/$node/log" && break
          sleep 0.05
        done
      done
      redis_yaml="  addrs: [$(IFS=,; echo "${addrs[*]}")]"
      ;;
  esac
  { cat bench/herald.yaml; printf 'broker: redis\nredis:\n%s\n' "$redis_yaml"; } >"$work/herald.yaml"
  ws_urls="" publish_urls=""
  for _ in 1 2; do
    port=$(free_port)
    HERALD_PORT=$port taskset -c 0 "$work/herald" -config "$work/herald.yaml" >/dev/null 2>>"$work/herald.log" &
    pids+=($!)
    wait_port "$port"
    ws_urls+="${ws_urls:+,}ws://127.0.0.1:$port/ws"
    publish_urls+="${publish_urls:+,}http://127.0.0.1:$port/notify"
  done
}

results="$work/results"
: >"$results"
for round in $(seq "$rounds"); do
  order=(single cluster)
  ((round % 2 == 0)) && order=(cluster single)
  for setup in "${order[@]}"; do
    start_setup "$setup"
    out=$(taskset -c 1 "$work/herald" bench -ws "$ws_urls" -publish "$publish_urls" -size 64 \
      -subscribers "$subscribers" -messages "$messages" -publishers "$publishers" -topics "$topics")
    stop_all
    echo "$out" | sed "s/^/$round $setup /" >>"$results"
    echo "$out" | awk -F= -v p="$round $setup " '
      $1 == "acknowledged" { a = $2 } $1 == "publish_seconds" { s = $2 }
      END { if (s > 0) printf "%spublishes_per_second=%.0f\n", p, a / s }' >>"$results"
    echo "round $round $setup: $(echo "$out" | grep -E '^(lost|duplicated|deliveries_per_second|latency_p99_ms)=' | tr '\n' ' ')" >&2
  done
done

median() { # setup key
  awk -v s="$1" -v k="$2" '$2==s { split($3, kv, "="); if (kv[1]==k) print kv[2] }' "$results" |
    sort -g | awk '{ a[NR]=$1 } END { if (NR) print a[int((NR+1)/2)]; else print "nan" }'
}
sum() { # setup key
  awk -v s="$1" -v k="$2" '$2==s { split($3, kv, "="); if (kv[1]==k) t+=kv[2] } END { print t+0 }' "$results"
}
row() { # label key
  local one three
  one=$(median single "$2")
  three=$(median cluster "$2")
  printf '| %s | %s | %s | %s |\n' "$1" "$one" "$three" "$(awk -v a="$one" -v b="$three" 'BEGIN { if (a > 0) printf "%.2f", b/a; else print "-" }')"
}

echo
echo "Two instances, $subscribers subscribers over $topics topics, $messages publishes by $publishers publishers; medians of $rounds rounds on $(nproc) cores."
echo
echo "| | one Redis | cluster of 3 masters | cluster / one |"
echo "|---|---|---|---|"
row "publishes/s" publishes_per_second
row "deliveries/s" deliveries_per_second
row "p50 publish-to-receive (ms)" latency_p50_ms
row "p99 publish-to-receive (ms)" latency_p99_ms
echo
for setup in single cluster; do
  printf 'lost with %s, all rounds: %s of %s (duplicated: %s)\n' "$setup" \
    "$(sum $setup lost)" "$(sum $setup expected_deliveries)" "$(sum $setup duplicated)"
done
