# Shared by bench/compare.sh and bench/redis_cluster.sh, which source it:
# finding a free loopback port, and waiting until a server opens one.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: returns once something accepts connections on PORT, or
# fails after ten seconds.
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing opened port $1" >&2
  return 1
}
