# leasekit: `make demo` runs the tour on an embedded etcd; `make test` runs
# every test. Only Go is needed; everything else comes through go modules.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?=
BENCHFLAGS  ?= -benchtime=2s -count=1
# make bench: the paired comparisons with etcd's own recipes, PAIRS pairs
# of rounds each (b.N counts pairs).
PAIRS       ?= 10
PAIRED      ?= ^Benchmark(Contended|Uncontended|Semaphore|RWMutex|Handover)
# make bench-etcd: where the etcd 3.7.3 server process listens.
BENCH_ETCD_PORT ?= 32379
# make compat: the etcd server versions (tools/compat/etcd/vX.Y) and where
# their binaries go (ignored by git).
COMPAT_VERSIONS ?= 3.5 3.6 3.7
COMPAT_BIN      ?= $(CURDIR)/tools/compat/.bin

.PHONY: all test demo bench bench-etcd bench-other lint cover chaos compat

all: lint test

## test: go vet, then the whole suite under the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -p 1 -timeout 12m $(TESTFLAGS) ./...

## demo: the narrated tour on an embedded etcd (pass ARGS="--help").
demo:
	$(GO) run ./cmd/demo $(ARGS)

## bench: leasekit beside etcd's concurrency package and recipes, paired
## (the two alternate in short rounds on one server; the ratio is taken per
## pair), on an embedded etcd with fsync on and with fsync off, and on the
## etcd at LEASEKIT_BENCH_ENDPOINTS if set. Ends with a Markdown table per
## package. Run it on an idle machine.
bench:
	$(GO) test -run '^$$' -bench '$(PAIRED)' -benchtime=$(PAIRS)x -count=1 -timeout 60m ./etcdlock ./election

## bench-etcd: make bench with a real etcd 3.7.3 process as a third server:
## built from tools/compat/etcd/v3.7, one member with etcd's defaults (fsync
## on) on 127.0.0.1:$(BENCH_ETCD_PORT), its data in a temporary directory
## under /tmp that is removed afterwards.
bench-etcd:
	@mkdir -p $(COMPAT_BIN)
	cd tools/compat/etcd/v3.7 && $(GO) build -o $(COMPAT_BIN)/etcd-3.7 .
	@set -e; dir=$$(mktemp -d /tmp/leasekit-bench-etcd.XXXXXX); \
	c=http://127.0.0.1:$(BENCH_ETCD_PORT); p=http://127.0.0.1:$$(($(BENCH_ETCD_PORT)+1)); \
	$(COMPAT_BIN)/etcd-3.7 --name bench --data-dir $$dir/data \
		--listen-client-urls $$c --advertise-client-urls $$c \
		--listen-peer-urls $$p --initial-advertise-peer-urls $$p --initial-cluster bench=$$p \
		>$$dir/etcd.log 2>&1 & pid=$$!; \
	trap 'kill $$pid; wait $$pid || true; rm -rf $$dir' EXIT; \
	LEASEKIT_BENCH_ENDPOINTS=127.0.0.1:$(BENCH_ETCD_PORT) $(MAKE) --no-print-directory bench

## bench-other: every other benchmark (rate limits, scale, embedtest start).
bench-other:
	$(GO) test -run '^$$' -bench . -skip '$(PAIRED)' $(BENCHFLAGS) ./...

## lint: formatting, vet and staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## cover: the suite with a coverage profile, summarised per function.
cover:
	$(GO) test -race -timeout 12m -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -n 1

## chaos: the fault suite's long form, under the race detector: 100 rounds
## (LEASEKIT_CHAOS_ROUNDS) of faults for the lock and for the election, and
## of SIGSTOP pauses of lock-holder and leader processes (5 of them), then
## the history checks. LEASEKIT_CHAOS_SEED replays a schedule.
chaos:
	LEASEKIT_CHAOS_ROUNDS=$${LEASEKIT_CHAOS_ROUNDS:-100} $(GO) test -race -count=1 -timeout 60m -run 'UnderFaults|UnderPauses' -v ./internal/chaos

## compat: the release check of supported etcd servers. Builds etcd 3.5.21,
## 3.6.16 and 3.7.3 from the Go module proxy (tools/compat/etcd/vX.Y), then
## runs the lock, election and rate-limit contracts against three member
## processes of each (tools/compat). Results: $(COMPAT_BIN)/results-X.Y.txt.
compat:
	@mkdir -p $(COMPAT_BIN)
	@set -e; for v in $(COMPAT_VERSIONS); do \
		echo "== etcd $$v: build"; \
		(cd tools/compat/etcd/v$$v && $(GO) build -o $(COMPAT_BIN)/etcd-$$v .); \
	done
	@status=0; for v in $(COMPAT_VERSIONS); do \
		echo "== etcd $$v: contracts"; \
		out=$(COMPAT_BIN)/results-$$v.txt; \
		if (cd tools/compat && LEASEKIT_COMPAT_ETCD=$(COMPAT_BIN)/etcd-$$v $(GO) test -count=1 -v -timeout 10m . >$$out 2>&1); \
		then r=PASS; else r=FAIL; status=1; fi; \
		grep -E 'compat: |^ *--- |^(ok|FAIL)' $$out | sed 's/^ *//'; \
		echo "etcd $$v: $$r (full output: $$out)"; \
	done; exit $$status
