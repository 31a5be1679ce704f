# leasekit: `make demo` runs the tour on an embedded etcd; `make test` runs
# every test. Only Go is needed; everything else comes through go modules.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TESTFLAGS   ?=
BENCHFLAGS  ?= -benchtime=2s -count=1

.PHONY: all test demo bench lint cover chaos

all: lint test

## test: go vet, then the whole suite under the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race -p 1 -timeout 12m $(TESTFLAGS) ./...

## demo: the narrated tour on an embedded etcd (pass ARGS="--help").
demo:
	$(GO) run ./cmd/demo $(ARGS)

## bench: benchmarks only, leasekit beside etcd's concurrency package.
bench:
	$(GO) test -run '^$$' -bench . $(BENCHFLAGS) ./...

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
## of faults (LEASEKIT_CHAOS_ROUNDS) for the lock and for the election, then
## the history checks. LEASEKIT_CHAOS_SEED replays a schedule.
chaos:
	LEASEKIT_CHAOS_ROUNDS=$${LEASEKIT_CHAOS_ROUNDS:-100} $(GO) test -race -count=1 -timeout 60m -run 'UnderFaults' -v ./internal/chaos
