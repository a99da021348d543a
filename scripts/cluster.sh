#!/usr/bin/env bash
# Starts ZooKeeper and three squall-node processes on loopback, for a person
# to try a cluster. Ctrl-C stops them: the nodes one by one (each hands its
# partitions to the others), then ZooKeeper. A second Ctrl-C while they stop
# kills what is left at once; nothing is left running either way.
#   HTTP:   127.0.0.1:8081, :8082, :8083       (HTTP_PORT0=8080: node i on HTTP_PORT0+i)
#   NATS:   127.0.0.1:4223, :4224, :4225       (NATS_PORT0=4222; one embedded server per node)
#   remote: 127.0.0.1:7001, :7002, :7003       (REMOTE_PORT0=7000)
#   ZooKeeper: 127.0.0.1:${ZK_PORT:-2181}
# The ports move with those environment variables (make passes its own
# variables on: make cluster HTTP_PORT0=9080). A port already taken stops
# the script before anything starts, naming the variable to change.
# Arguments are passed to every node.
set -euo pipefail
cd "$(dirname "$0")/.."
ZK_PORT=${ZK_PORT:-2181}
HTTP_PORT0=${HTTP_PORT0:-8080}
NATS_PORT0=${NATS_PORT0:-4222}
REMOTE_PORT0=${REMOTE_PORT0:-7000}
# inuse PORT: something listens on 127.0.0.1:PORT.
inuse() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
for spec in "ZK_PORT $ZK_PORT" \
	"HTTP_PORT0 $((HTTP_PORT0 + 1)) $((HTTP_PORT0 + 2)) $((HTTP_PORT0 + 3))" \
	"NATS_PORT0 $((NATS_PORT0 + 1)) $((NATS_PORT0 + 2)) $((NATS_PORT0 + 3))" \
	"REMOTE_PORT0 $((REMOTE_PORT0 + 1)) $((REMOTE_PORT0 + 2)) $((REMOTE_PORT0 + 3))"; do
	read -r var ports <<<"$spec"
	for port in $ports; do
		if inuse "$port"; then
			echo "cluster.sh: port $port is in use; move the cluster's ports with $var (e.g. make cluster $var=$(( ${!var} + 1000 )))" >&2
			exit 1
		fi
	done
done
make -s build
./scripts/zk.sh fetch
mkdir -p .cache
data="$(mktemp -d "${TMPDIR:-/tmp}/squall-cluster-zk.XXXXXX")"
zk=
nodes=()
stopping=0
force=0

# Every child runs in a session of its own (setsid), so that the terminal's
# Ctrl-C, sent to the whole foreground process group, reaches this script
# only: it alone decides the order in which they stop.

# stop NAME PID: SIGTERM, then wait for the process to exit; after a second
# Ctrl-C (force), SIGKILL.
stop() {
	local name=$1 pid=$2
	kill -0 "$pid" 2>/dev/null || return 0
	echo "cluster.sh: stopping $name" >&2
	if ((force)); then
		kill -KILL "$pid" 2>/dev/null || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	while kill -0 "$pid" 2>/dev/null; do
		if ((force)); then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true # returns early when a signal is trapped
	done
	echo "cluster.sh: $name stopped" >&2
}

cleanup() {
	if ((stopping)); then
		return
	fi
	stopping=1
	trap 'force=1; echo "cluster.sh: stopping everything now (kill -9)" >&2' INT TERM HUP
	for ((i = ${#nodes[@]} - 1; i >= 0; i--)); do
		stop "n$((i + 1))" "${nodes[i]}"
	done
	if [ -n "$zk" ]; then
		stop zookeeper "$zk"
	fi
	rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

setsid ./scripts/zk.sh serve "$ZK_PORT" "$data" > .cache/zk-cluster.log 2>&1 &
zk=$!
for _ in $(seq 300); do
	if inuse "$ZK_PORT"; then break; fi
	if ! kill -0 "$zk" 2>/dev/null; then
		echo "cluster.sh: ZooKeeper did not start, see .cache/zk-cluster.log" >&2
		exit 1
	fi
	sleep 0.1
done
for i in 1 2 3; do
	setsid ./bin/squall-node --zk 127.0.0.1:"$ZK_PORT" --node-id "n$i" \
		--http-addr 127.0.0.1:$((HTTP_PORT0 + i)) --nats-addr 127.0.0.1:$((NATS_PORT0 + i)) \
		--remote-addr 127.0.0.1:$((REMOTE_PORT0 + i)) "$@" &
	nodes+=($!)
done
echo "cluster up: curl -s localhost:$((HTTP_PORT0 + 1))/debug/cluster   (Ctrl-C stops it)" >&2
wait
