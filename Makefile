# jobfleet — build, test and run every module of the workspace.
#
#   make run     the whole system on this machine (embedded profile)
#   make test    every module's tests with -race: conformance suites on the
#                local adapters and on a moto server, the e2e suite
#   make fuzz    fuzz every parser of outside input (FUZZTIME each, default 1m)
#   make bench   the benchmark scenarios (e2e/bench) at full size: prints every
#                table and appends them to docs/benchmarks.md
#   make lint    gofmt check, go vet, staticcheck
#   make build   the three service binaries into ./bin (TAGS=jobfleet_noaws
#                for local-profile-only binaries, TAGS=jobfleet_nolocal for
#                aws-only ones, TAGS=jobfleet_nolocal,jobfleet_ecs for the
#                ECS images' ones: smaller; see pkg/profile)
#   make tidy    go mod tidy in every module

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
export GOFLAGS ?= -buildvcs=false
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools
STATICCHECK_VERSION := v0.8.2
MOTO_MIN := 5.1.21
SERVICES := dispatcher worker reaper
# Build tags that leave a profile out of the binaries (pkg/profile); lint
# vets every variant.
TAGS ?=
SLIM_TAGS := jobfleet_noaws jobfleet_nolocal jobfleet_nolocal,jobfleet_ecs
# Every module in go.work, as directories.
MODULES = $(shell $(GO) list -f '{{.Dir}}' -m)
TEST_FLAGS ?= -race -count=1 -timeout 15m
# make run's settings; override on the command line (make run DATA=/tmp/jf).
DATA ?= $(CURDIR)/.jobfleet
HTTP_ADDR ?= 127.0.0.1:8080

# Fuzz targets: package and function, one per parser of outside input.
FUZZ_TARGETS := dispatcher:FuzzDecodeSubmission dispatcher:FuzzParseRange dispatcher:FuzzDecodeBatch \
	dispatcher:FuzzListQuery fleet:FuzzParseEvent blob:FuzzValidKey job:FuzzSubmission job:FuzzDecodeMessage config:FuzzLoad
FUZZTIME ?= 1m

.PHONY: all build test lint tidy fmt clean run moto vet fuzz bench

all: build

build:
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do \
	  (cd services/$$s && $(GO) build -tags "$(TAGS)" -o $(BIN)/jobfleet-$$s .) || exit 1; \
	done

# moto_server is the AWS endpoint the aws adapters' tests run against.
moto:
	@if ! command -v moto_server >/dev/null 2>&1; then \
	  echo "moto_server not found: installing moto[server]>=$(MOTO_MIN) with pip"; \
	  python3 -m pip install --user --quiet "moto[server]>=$(MOTO_MIN)" || { \
	    echo "error: could not install moto (needs Python 3 and pip with access to PyPI)."; \
	    echo "       Install it yourself: pip install 'moto[server]>=$(MOTO_MIN)'"; exit 1; }; \
	fi
	@v=$$(python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || echo 0); \
	if [ "$$(printf '%s\n%s\n' "$(MOTO_MIN)" "$$v" | sort -V | head -1)" != "$(MOTO_MIN)" ]; then \
	  echo "error: moto $$v is older than $(MOTO_MIN) (SQS's 1 MiB messages); pip install -U 'moto[server]>=$(MOTO_MIN)'"; exit 1; \
	fi

# The short fuzz runs of `make test` are counts, not durations: Go 1.26's
# fuzz coordinator can fail a run with a bare "context deadline exceeded" as
# a duration ends on a loaded machine (golang/go#75804, fixed in Go 1.27); a
# count has no deadline to race.
test: moto
	@for m in $(MODULES); do \
	  echo "== test $${m#$(CURDIR)/}"; \
	  (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || exit 1; \
	done
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

# Seed corpora live in pkg/*/testdata/fuzz; `go test` replays them in every
# run, and this target fuzzes beyond them (make fuzz FUZZTIME=10m for long
# runs; new failures land in testdata/fuzz as regression inputs).
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "== fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  log=$$(mktemp); \
	  (cd pkg && $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg >$$log 2>&1) || \
	    { tail -n 30 $$log; rm -f $$log; echo "fuzz $$pkg $$fn failed (a failing input found is in pkg/$$pkg/testdata/fuzz/$$fn)"; exit 1; }; \
	  rm -f $$log; \
	done

$(TOOLS)/staticcheck:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(TOOLS)/staticcheck
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do \
	  echo "== lint $${m#$(CURDIR)/}"; \
	  (cd $$m && $(GO) vet ./... && $(TOOLS)/staticcheck ./...) || exit 1; \
	done
	@for t in $(SLIM_TAGS); do \
	  echo "== lint -tags $$t"; \
	  (cd pkg && $(GO) vet -tags $$t ./profile/... ./awsconfig/... && $(TOOLS)/staticcheck -tags $$t ./profile/... ./awsconfig/...) && \
	  for s in $(SERVICES); do \
	    (cd services/$$s && $(GO) vet -tags $$t ./... && $(TOOLS)/staticcheck -tags $$t ./...) || exit 1; \
	  done || exit 1; \
	done
	@echo "== lint infra"; infra/check

fmt:
	gofmt -w $(MODULES)

tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

# The whole system on this machine (see scripts/run). make run PROFILE=aws
# runs the same stack on the aws profile's adapters (DynamoDB, SQS, S3) with
# local worker processes, against AWS_ENDPOINT_URL when it is set, else
# against a moto server it starts on 127.0.0.1:$(MOTO_PORT); it bootstraps
# the resources first.
PROFILE ?= local
MOTO_PORT ?= 4566
run: build
	@if [ "$(PROFILE)" = aws ] && [ -z "$${AWS_ENDPOINT_URL+set}" ]; then $(MAKE) --no-print-directory moto; fi
	@BIN=$(BIN) DATA=$(DATA) HTTP_ADDR=$(HTTP_ADDR) PROFILE=$(PROFILE) MOTO_PORT=$(MOTO_PORT) scripts/run

# make bench: every scenario of e2e/bench at full size, without -race (the
# race detector would measure itself), one at a time; appends a dated section
# to docs/benchmarks.md and writes the burn-down drain's CPU profile to
# BENCH_PROFILE (go tool pprof -top $(BENCH_PROFILE)). Needs moto (the cost
# scenario). About 7 minutes on a 2-core machine with a warm build cache.
# `make test` runs the same scenarios at a tiny size (e2e/bench's default),
# under -race, so the benchmarks never rot.
BENCH_PROFILE ?= $(BIN)/drain.pprof
bench: moto
	@mkdir -p $(BIN)
	cd e2e && $(GO) test -count=1 -timeout 20m -v -run . ./bench \
	  -args -size=full -report=$(CURDIR)/docs/benchmarks.md -drainprofile=$(BENCH_PROFILE)

clean:
	rm -rf $(BIN)
