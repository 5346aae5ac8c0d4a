# Outpost. `make run` starts a dev region; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local
export GOFLAGS := -buildvcs=false
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

STATICCHECK_VERSION := v0.8.2
# Fuzz each parser of untrusted input briefly on every run; longer in
# test-long. Counted in executions, not seconds: a time-based -fuzztime can
# end in Go's fuzzer with a spurious "context deadline exceeded" on a busy
# machine.
FUZZTIME ?= 50000x

.PHONY: all build run test test-long lint fuzz bench generate clean ui docs man

all: build

# `outpost version` and friends show the commit and the build time
# (internal/buildinfo); a plain go build leaves them "unknown".
BUILDINFO := github.com/outpost-mesh/outpost/internal/buildinfo
LDFLAGS := -X $(BUILDINFO).commit=$(shell git rev-parse HEAD 2>/dev/null) \
	-X $(BUILDINFO).modified=$(shell git diff --quiet HEAD 2>/dev/null || echo true) \
	-X $(BUILDINFO).built=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

build: ui
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# The CLI reference in docs/cli/, generated from the command trees (each
# command's TestCLIReference fails when it is out of date).
docs:
	$(GO) generate ./cmd/...

# Man pages of the three commands, from the same trees, into bin/man/man1
# (built, not committed: docs/cli.md says why).
man:
	mkdir -p bin/man/man1
	$(GO) test ./cmd/outpostctl ./cmd/outpost ./cmd/outpost-agent -run '^TestCLIReference$$' -count=1 -args -man $(CURDIR)/bin/man/man1

# The web UI (ui/src, TypeScript) bundled by esbuild into ui/dist, which the
# node embeds (ui/ui.go). npm installs the locked versions (ui/package-lock.json);
# the build (after a type check) reruns only when a source changed. Built
# files are not committed.
UI_SOURCES := $(wildcard ui/src/* ui/src/*/*) ui/build.mjs ui/package.json ui/package-lock.json
ui: ui/dist/index.html
ui/dist/index.html: $(UI_SOURCES)
	cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && node build.mjs

run: build
	./bin/outpost dev --nodes 1

# The whole suite, under the race detector, plus lint and a fuzz smoke.
test: lint ui
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz

# Longer fault and soak runs (among them 200 rounds of
# internal/e2e's TestCrashConsistency, 12-25 minutes).
test-long: lint ui
	OUTPOST_TEST_LONG=1 $(GO) test -race -count=1 -timeout 60m ./...
	$(MAKE) fuzz FUZZTIME=2000000x

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeKV$$' -fuzztime $(FUZZTIME) ./raft/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeTenantKV$$' -fuzztime $(FUZZTIME) ./raft/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./raft/
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./node/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeOp$$' -fuzztime $(FUZZTIME) ./node/agents/
	$(GO) test -run '^$$' -fuzz '^FuzzParseSelector$$' -fuzztime $(FUZZTIME) ./node/agents/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCSR$$' -fuzztime $(FUZZTIME) ./node/pki/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCheckpoint$$' -fuzztime $(FUZZTIME) ./audit/
	$(GO) test -run '^$$' -fuzz '^FuzzSessionParse$$' -fuzztime $(FUZZTIME) ./node/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzResolve$$' -fuzztime $(FUZZTIME) ./node/clientaddr/
	$(GO) test -run '^$$' -fuzz '^FuzzUnwrap$$' -fuzztime $(FUZZTIME) ./node/keys/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFile$$' -fuzztime $(FUZZTIME) ./node/keys/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeDispatch$$' -fuzztime $(FUZZTIME) ./lease/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeOp$$' -fuzztime $(FUZZTIME) ./lease/
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./internal/strictjson/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeServerMessage$$' -fuzztime $(FUZZTIME) ./agent/
	$(GO) test -run '^$$' -fuzz '^FuzzOTLPBody$$' -fuzztime $(FUZZTIME) ./node/otlp/
	$(GO) test -run '^$$' -fuzz '^FuzzQueryParams$$' -fuzztime $(FUZZTIME) ./node/query/
	$(GO) test -run '^$$' -fuzz '^FuzzWalkAgreesWithProtobuf$$' -fuzztime $(FUZZTIME) ./node/otlp/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./storage/remotewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzParseEvent$$' -fuzztime $(FUZZTIME) ./bpf/
	$(GO) test -run '^$$' -fuzz '^FuzzParseFormat$$' -fuzztime $(FUZZTIME) ./bpf/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./federation/httpsig/
	$(GO) test -run '^$$' -fuzz '^FuzzAnswers$$' -fuzztime $(FUZZTIME) ./federation/
	$(GO) test -run '^$$' -fuzz '^FuzzParseTCP$$' -fuzztime $(FUZZTIME) ./agent/procfs/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCounters$$' -fuzztime $(FUZZTIME) ./agent/procfs/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatchFile$$' -fuzztime $(FUZZTIME) ./agent/export/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResponse$$' -fuzztime $(FUZZTIME) ./agent/export/
	$(GO) test -run '^$$' -fuzz '^FuzzParseInetAton$$' -fuzztime $(FUZZTIME) ./internal/agentwire/
	$(GO) test -run '^$$' -fuzz '^FuzzGuardHost$$' -fuzztime $(FUZZTIME) ./internal/agentwire/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...

# Write path against etcd (in-process and through the nodes' HTTP API,
# 3 interleaved pairs per level: median ratio and spread) and failover,
# then 20 dispatch-lease drills per mode with the ratio to etcd's
# kill-the-leader → next write (BENCHMARKS.md). Needs etcd (apt-get install
# etcd-server); the API table runs bin/outpost.
bench: build
	$(GO) run ./bench/regionbench -pairs 3 -outpost-bin bin/outpost -failover-rounds 20 -lease-rounds 20
	$(GO) run ./bench/agentbench -agents 10000
	$(GO) run ./bench/otlpbench -series 10000 -rounds 30 $$(command -v prometheus >/dev/null && echo -prometheus $$(command -v prometheus))
	$(GO) run ./bench/querybench -series 10000 -runs 50 -max-samples 50000000 -nodes 3
	$(GO) run ./bench/dataplanebench -short
	$(GO) run ./bench/fedbench

# Rebuilds the eBPF objects, their Go bindings and the SHA-256 manifest
# (bpf/gen.go) with the pinned toolchain: Debian 12's clang 14, llvm and
# libbpf-dev (apt-get install clang llvm libbpf-dev).
generate:
	@clang --version | grep -q 'clang version 14\.' || { echo "make generate: the objects are pinned to clang 14 (Debian 12); install it with apt-get install clang llvm libbpf-dev"; exit 1; }
	$(GO) generate ./...

clean:
	rm -rf bin
