#!/usr/bin/env bash
# Starts ZooKeeper and three squall-node processes on loopback, for a person
# to try a cluster. Ctrl-C stops them all.
#   HTTP:   127.0.0.1:8081, :8082, :8083
#   NATS:   127.0.0.1:4223, :4224, :4225 (one embedded server per node)
#   remote: 127.0.0.1:7001, :7002, :7003
#   ZooKeeper: 127.0.0.1:${ZK_PORT:-2181}
set -euo pipefail
cd "$(dirname "$0")/.."
ZK_PORT=${ZK_PORT:-2181}
make -s build
./scripts/zk.sh fetch
zk=
nodes=()
cleanup() {
	trap - INT TERM EXIT
	# One node at a time, so each hands its partitions to the others; the
	# last one has nobody to hand to. ZooKeeper goes last.
	for ((i = ${#nodes[@]} - 1; i >= 0; i--)); do
		kill -TERM "${nodes[i]}" 2>/dev/null || true
		wait "${nodes[i]}" 2>/dev/null || true
	done
	[ -n "$zk" ] && kill -TERM "$zk" 2>/dev/null || true
	wait || true
}
trap cleanup INT TERM EXIT
./scripts/zk.sh run "$ZK_PORT" > .cache/zk-cluster.log 2>&1 &
zk=$!
for _ in $(seq 100); do
	if (exec 3<>/dev/tcp/127.0.0.1/"$ZK_PORT") 2>/dev/null; then break; fi
	sleep 0.1
done
for i in 1 2 3; do
	./bin/squall-node --zk 127.0.0.1:"$ZK_PORT" --node-id "n$i" \
		--http-addr 127.0.0.1:808$i --nats-addr 127.0.0.1:422$((i + 2)) \
		--remote-addr 127.0.0.1:700$i "$@" &
	nodes+=($!)
done
echo "cluster up: curl -s localhost:8081/debug/cluster   (Ctrl-C stops it)"
wait
