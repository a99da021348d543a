# Squall — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
BIN       := bin/squall-node
CTL       := bin/squallctl
PKGS      := ./...
BENCHTIME ?= 1s
# PEER_FLAGS adds to make bench-peers's flags, e.g. PEER_FLAGS="-peer-events 1000000 -peer-rounds 1".
PEER_FLAGS ?=

.PHONY: all help build run test test-short chaos chaos-jetstream bench bench-quick bench-peers bench-micro lint proto fuzz zk kafka cluster clean

all: build

help: ## list the targets and their settings
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  make %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build: ## build bin/squall-node and bin/squallctl
	@if [ -x $(BIN) ]; then echo "building $(BIN) and $(CTL)"; \
	else echo "building $(BIN) and $(CTL) (the first build downloads the Go modules and compiles them: about a minute)..."; fi
	$(GO) build -o $(BIN) ./cmd/node
	$(GO) build -o $(CTL) ./cmd/squallctl

run: build ## start a standalone node: HTTP 127.0.0.1:8080, embedded NATS 127.0.0.1:4222
	./$(BIN) $(ARGS)

# Packages whose tests drive node processes (built without -race) and whose
# own code is only load generators and checkers: run without the race
# detector, which would slow the load they generate several times over.
PROCPKGS  := ./cmd/node/ ./internal/chaos/

test: ## vet, then every test (with the race detector but for the process-driving suites; what CI runs)
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 12m $$($(GO) list $(PKGS) | grep -v -e '/cmd/node$$' -e '/internal/chaos$$')
	CHAOS_LOG=kafka $(GO) test -count=1 -timeout 14m $(PROCPKGS) # the short chaos form, Kafka only (make chaos-jetstream for the other)
	$(GO) test -count=1 -run 'Memory' ./window/ ./alerts/ # heap measurements, skipped under -race

test-short: ## quick tests without the race detector
	$(GO) test -short -count=1 $(PKGS)

CHAOS_DURATION ?= 10m
chaos: ## the fault-injection suite, 10 minutes (CHAOS_SEED, CHAOS_DURATION; CHAOS_LOG=kafka|jetstream, default kafka)
	CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -run TestChaos -count=1 -timeout 30m ./internal/chaos/ -v

chaos-jetstream: ## the fault-injection suite with a 3-server JetStream cluster as the log instead of Kafka
	CHAOS_LOG=jetstream $(MAKE) chaos

bench: build ## the benchmark harness, full (~13 min; real Kafka and ZooKeeper): table, docs/bench/{results.json,chart.svg,results.md}
	$(GO) run ./cmd/squall-bench -mode full -node-binary $(BIN) -commit "$$(git rev-parse --short HEAD 2>/dev/null)" \
		-json docs/bench/results.json -svg docs/bench/chart.svg -table docs/bench/results.md

bench-quick: ## a 30-second subset of the harness (kfake, 10K/100K keys, ingest, memory)
	$(GO) run ./cmd/squall-bench -mode quick

bench-peers: ## Squall against Kafka Streams 4.4 and Flink 2.2 on one broker and topic (5M events, 3 rounds; ~12 min on 2 cores; Java 17, Maven; each system's end state checked): docs/bench/peers.{json,md,svg}
	cd bench/peers && { mvn -B -q -o package >/dev/null 2>&1 || mvn -B -q package; }
	$(GO) run ./cmd/squall-bench -mode peers -peers-dir bench/peers $(PEER_FLAGS) -commit "$$(git rev-parse --short HEAD 2>/dev/null)" \
		-json docs/bench/peers.json -table docs/bench/peers.md -svg docs/bench/peers.svg

bench-micro: ## the Go microbenchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./window/ ./event/ ./actors/ ./alerts/ ./output/ ./httpapi/ ./cluster/

lint: ## gofmt and vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

proto: ## regenerate messages/*.pb.go (fetches protoc into .cache/)
	./scripts/protoc.sh

fuzz: ## run each fuzzer (the decoders, HTTP ingest end to end) for FUZZTIME (default 20s)
	for t in event:FuzzDecodeJSON event:FuzzDecodeNDJSON event:FuzzDecodeProto httpapi:FuzzPostEvents; do \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $${FUZZTIME:-20s} ./$${t%%:*}/ || exit 1; done

zk: ## run a ZooKeeper 3.9.5 in the foreground on 127.0.0.1:2181 (fetched into .cache/)
	./scripts/zk.sh run $(or $(ZK_PORT),2181)

kafka: ## run a single-node Kafka 4.4.0 (KRaft) in the foreground on 127.0.0.1:9092 (fetched into .cache/)
	./scripts/kafka.sh run $(or $(KAFKA_PORT),9092)

# make cluster's ports: node i (1..3) listens on HTTP_PORT0+i, NATS_PORT0+i
# and REMOTE_PORT0+i; e.g. make cluster HTTP_PORT0=9080 for 9081-9083.
cluster: ## ZooKeeper + three nodes on loopback: HTTP 8081-8083, NATS 4223-4225, remote 7001-7003, ZooKeeper 2181 (move them with HTTP_PORT0=, NATS_PORT0=, REMOTE_PORT0=, ZK_PORT=); Ctrl-C stops them
	./scripts/cluster.sh $(ARGS)

clean:
	rm -rf bin
