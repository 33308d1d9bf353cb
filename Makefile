# Everything a newcomer and CI need. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/kuma-ha/kuma-ha/cmd/internal/version.Version=$(VERSION)
BINARIES := kuma-cp kuma-dp kumactl
FUZZTIME ?= 20s

.PHONY: help build run test test-short bench bench-dp bench-xds fuzz lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## static binaries in ./bin (kuma-cp, kuma-dp, kumactl)
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINARIES))

run: build ## a single-node standalone control plane, data in ./kuma-cp-data, API on :5681
	./bin/kuma-cp run

test: ## every test, with the race detector (integration tests start built binaries)
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: ## unit tests only (skips the multi-process integration tests)
	$(GO) test -race -short -count=1 ./...

bench: build ## BENCHMARKS.md: replicated writes vs etcd, failover, snapshot/restore, data plane (installs etcd-server if missing); xDS: make bench-xds
	@command -v etcd >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server)
	CGO_ENABLED=0 $(GO) build -o bin/kuma-bench ./cmd/kuma-bench
	./bin/kuma-bench all --bin-dir bin --out BENCHMARKS.md

bench-dp: build ## BENCHMARKS.md data plane section: kuma-dp's built-in proxy vs direct (throughput, added latency, RSS, CPU)
	CGO_ENABLED=0 $(GO) build -o bin/kuma-bench ./cmd/kuma-bench
	./bin/kuma-bench dataplane --bin-dir bin --out BENCHMARKS.md

bench-xds: build ## BENCHMARKS.md xDS sections: kuma-xds-load, 2,000 proxies on one replica and 10,000 over three (SotW; a few minutes)
	CGO_ENABLED=0 $(GO) build -o bin/kuma-xds-load ./cmd/kuma-xds-load
	./bin/kuma-xds-load --bin-dir bin --replicas 1 --proxies 2000 --changes 20 --out BENCHMARKS.md
	./bin/kuma-xds-load --bin-dir bin --replicas 3 --proxies 10000 --changes 20 --out BENCHMARKS.md

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin kuma-cp-data

.PHONY: chaos-smoke chaos-rolling chaos
CHAOS_SEED ?= 1
CHAOS_OUT ?= bin/chaos-out

chaos-smoke: build ## 60 s chaos run: 3 local kuma-cp processes, kill + pause + restart under load; fails if a checker fails
	CGO_ENABLED=0 $(GO) build -o bin/kuma-chaos ./cmd/kuma-chaos
	./bin/kuma-chaos --backend process --network loopback --replicas 3 --duration 60s --seed $(CHAOS_SEED) --nemesis smoke --min-gap 1s --max-gap 3s --min-hold 2s --max-hold 6s --bin-dir bin --out $(CHAOS_OUT)/smoke

chaos-rolling: build ## 2 min chaos run: 3 local kuma-cp processes, rolling SIGTERM restarts only (followers first, leader last) under If-Match writes; fails if a checker fails or fewer than 4 rounds completed
	CGO_ENABLED=0 $(GO) build -o bin/kuma-chaos ./cmd/kuma-chaos
	./bin/kuma-chaos --backend process --network loopback --replicas 3 --duration 120s --seed $(CHAOS_SEED) --nemesis rolling-restart --min-gap 1s --max-gap 3s --min-hold 1s --max-hold 2s --min-faults 4 --proxies 0 --bin-dir bin --out $(CHAOS_OUT)/rolling

chaos: build ## 10 min chaos run on Docker (images FROM scratch) mixing every nemesis; report in $(CHAOS_OUT)/docker/report.html
	@command -v ip >/dev/null && command -v iptables >/dev/null && command -v tc >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables)
	CGO_ENABLED=0 $(GO) build -o bin/kuma-chaos ./cmd/kuma-chaos
	./bin/kuma-chaos --backend docker --replicas 3 --duration 10m --seed $(CHAOS_SEED) --nemesis all --bin-dir bin --out $(CHAOS_OUT)/docker
