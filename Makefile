# Butter's build. `make test` and `make dev` install what they need
# themselves: the pinned Nomad (built from tools/go.mod), the pinned Vault
# (tools/vault/go.mod) and staticcheck land in bin/, which git ignores.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= 0.1.0-dev
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK_VERSION := v0.8.2
# Fuzzing budgets are counts of executions, not durations: with a duration,
# Go 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when -fuzztime ends while a starved worker is mid-call
# (golang/go#75804, fixed in Go 1.27; CI saw it on FuzzParse with no
# crasher). Each count is about 20-30 s on this 2-core machine when quiet.
FUZZTIME ?= 100000x
# The API's JSON bodies are fuzzed against a real single-node control
# plane (scheduler.FuzzAPIBodies): bounded, and kept short.
API_FUZZTIME ?= 25000x
ACL_FUZZTIME ?= 200000x
FUZZ_TIMEOUT ?= 15m

export BUTTER_NOMAD := $(BIN)/nomad
export BUTTER_VAULT := $(BIN)/vault

.PHONY: all build tools test-deps test unit test-stress fuzz lint bench dev clean

all: build

## build: the butter CLI into bin/butter
build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/butter ./cmd/butter
	$(GO) build -o $(BIN)/nomad-driver-butter ./cmd/nomad-driver-butter
	$(GO) build -o $(BIN)/butter-sandbox ./cmd/butter-sandbox

## tools: the pinned Nomad, Vault, OpenTofu and staticcheck, into bin/
tools: $(BIN)/nomad $(BIN)/vault $(BIN)/tofu $(BIN)/staticcheck

## test-deps: what the http runtime's OpenFaaS-style fixtures need (gateway TestOpenFaaSTemplates): npm, which installs express for the node20-style one, and Flask and waitress from Debian for the python3-http-style one (PyPI is not reachable here); Debian's Prometheus (e2e/nomad TestIoTOnNomad scrapes the platform with it); Debian's Chromium (e2e/ui TestWebUIOnIoT drives the web UI in it, headless; with CI=true a missing one fails the test); and Debian's OpenJDK 17 (javac builds java functions: plugins/pool TestJava, the benchmarks, e2e/dev TestJavaExample); and Debian's Mosquitto with its clients (plugins/pool TestMQTTConnectors runs the broker and publishes with mosquitto_pub); and Debian's PostgreSQL 15 (plugins/pool TestPostgresSink runs a cluster of its own); and Debian's InfluxDB 1.6 (plugins/pool TestInfluxSink)
test-deps:
	@command -v npm >/dev/null || apt-get install -y npm || (apt-get update && apt-get install -y npm)
	@/usr/bin/python3 -c 'import flask, waitress' 2>/dev/null || apt-get install -y python3-flask python3-waitress || (apt-get update && apt-get install -y python3-flask python3-waitress)
	@command -v prometheus >/dev/null || apt-get install -y prometheus || (apt-get update && apt-get install -y prometheus)
	@command -v chromium >/dev/null || apt-get install -y chromium || (apt-get update && apt-get install -y chromium)
	@command -v javac >/dev/null || apt-get install -y openjdk-17-jdk-headless || (apt-get update && apt-get install -y openjdk-17-jdk-headless)
	@command -v mosquitto_pub >/dev/null || apt-get install -y mosquitto mosquitto-clients || (apt-get update && apt-get install -y mosquitto mosquitto-clients)
	@test -x /usr/lib/postgresql/15/bin/postgres || apt-get install -y postgresql-15 || (apt-get update && apt-get install -y postgresql-15)
	@command -v influxd >/dev/null || apt-get install -y influxdb || (apt-get update && apt-get install -y influxdb)

$(BIN)/nomad: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	@echo "==> Building Nomad $$(sed -n 's/^require github.com\/hashicorp\/nomad \(v[^ ]*\).*/\1/p' tools/go.mod) from the module proxy (a cold build takes about 5 minutes)"
	cd tools && $(GO) build -o $(BIN)/nomad github.com/hashicorp/nomad
	@$(BIN)/nomad version

# Vault's release modules do not build against their own sdk versions:
# tools/vault/README.md says which pin builds and why.
$(BIN)/vault: tools/vault/go.mod tools/vault/go.sum
	@mkdir -p $(BIN)
	@echo "==> Building Vault $$(sed -n 's/^require github.com\/hashicorp\/vault \(v[^ ]*\).*/\1/p' tools/vault/go.mod) from the module proxy (a cold build takes about 8 minutes)"
	cd tools/vault && GONOSUMDB=github.com/hashicorp/vault-hcp-lib $(GO) build -o $(BIN)/vault github.com/hashicorp/vault
	@$(BIN)/vault version

# OpenTofu runs the Terraform provider's tests (e2e/terraform); it needs
# its own fork of hcl/v2 (tools/tofu/go.mod).
$(BIN)/tofu: tools/tofu/go.mod tools/tofu/go.sum
	@mkdir -p $(BIN)
	@echo "==> Building OpenTofu $$(sed -n 's/^require github.com\/opentofu\/opentofu \(v[^ ]*\).*/\1/p' tools/tofu/go.mod) from the module proxy (a cold build takes about 5 minutes)"
	cd tools/tofu && $(GO) build -ldflags "-X github.com/opentofu/opentofu/version.dev=no" -o $(BIN)/tofu github.com/opentofu/opentofu/cmd/tofu
	@$(BIN)/tofu version

$(BIN)/staticcheck:
	@mkdir -p $(BIN)
	@echo "==> Installing staticcheck $(STATICCHECK_VERSION)"
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## lint: go.mod tidy, gofmt, go vet and staticcheck, all clean
lint: $(BIN)/staticcheck
	@echo "==> go mod tidy -diff"
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy and commit the result"; exit 1; }
	@cd sdk/go && $(GO) mod tidy -diff || { echo "sdk/go: go.mod or go.sum is not tidy: run go mod tidy there"; exit 1; }
	@echo "==> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/\|^examples/\|/templates/')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@echo "==> go vet"
	$(GO) vet ./...
	cd sdk/go && $(GO) vet ./...
	@echo "==> staticcheck"
	$(BIN)/staticcheck ./...
	cd sdk/go && $(BIN)/staticcheck ./...

## test: every test: lint, the race-enabled suite (with a real Nomad agent), and bounded fuzzing
test: tools lint unit fuzz

# go test runs in two groups, each with its own time budget (-timeout is
# per test binary, that is per package): the unit packages, and the slow
# end-to-end packages that drive butter and Nomad as subprocesses: e2e/,
# or cmd/butter before those tests moved there, and plugins/driver, whose
# tests build the plugin and run it under a real Nomad agent (603 s of a
# 10-minute budget once, on a machine with a load average of 20).
# docs/testing.md says where the time goes.
MODULE := github.com/butterfn/butter
UNIT_TIMEOUT ?= 15m
E2E_TIMEOUT ?= 25m
ALL_PKGS = $(shell $(GO) list ./...)
E2E_PKGS = $(or $(filter $(MODULE)/e2e $(MODULE)/e2e/%,$(ALL_PKGS)),$(MODULE)/cmd/butter) $(MODULE)/plugins/driver
UNIT_PKGS = $(filter-out $(E2E_PKGS),$(ALL_PKGS))

unit: $(BIN)/nomad $(BIN)/vault test-deps
	@echo "==> go test -race, unit packages (-timeout $(UNIT_TIMEOUT) each)"
	BUTTER_REQUIRE_NOMAD=1 $(GO) test -race -count=1 -timeout $(UNIT_TIMEOUT) $(UNIT_PKGS)
	@echo "==> go test -race, end-to-end packages (-timeout $(E2E_TIMEOUT) each)"
	BUTTER_REQUIRE_NOMAD=1 $(GO) test -race -count=1 -timeout $(E2E_TIMEOUT) $(E2E_PKGS)
	@echo "==> the Go SDK (its own module)"
	cd sdk/go && $(GO) test -race -count=1 -timeout $(UNIT_TIMEOUT) ./...
	@echo "==> the Node SDK"
	node --test sdk/node/
	@echo "==> the Python SDK"
	python3 -m unittest discover -s sdk/python -p 'test_*.py'

## test-stress: the Go suites 3 times over while stress-ng keeps both CPUs busy (not part of make test)
# A test that passes here does not depend on how fast the machine is.
# stress-ng comes from Debian. STRESS_PKGS runs only those packages (for
# example STRESS_PKGS=./hcl/...), without the Nomad and Vault builds;
# STRESS_FLAGS adds go test flags (-race). The load stops however the
# tests end (stress-ng's own --timeout is a backstop should make be
# killed).
STRESS_COUNT ?= 3
STRESS_CPUS ?= 2
STRESS_PKGS ?=
STRESS_FLAGS ?=
test-stress: $(if $(STRESS_PKGS),,$(BIN)/nomad $(BIN)/vault)
	@command -v stress-ng >/dev/null || apt-get install -y stress-ng || (apt-get update && apt-get install -y stress-ng)
	@echo "==> go test -count=$(STRESS_COUNT) under stress-ng --cpu $(STRESS_CPUS)"
	@stress-ng --cpu $(STRESS_CPUS) --timeout 4h --quiet & load=$$!; \
	  trap 'kill $$load 2>/dev/null; wait $$load 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	  export BUTTER_REQUIRE_NOMAD=1; set -x; \
	  if [ -n "$(STRESS_PKGS)" ]; then \
	    $(GO) test $(STRESS_FLAGS) -count=$(STRESS_COUNT) -timeout 60m $(STRESS_PKGS); \
	  else \
	    $(GO) test $(STRESS_FLAGS) -count=$(STRESS_COUNT) -timeout 30m $(UNIT_PKGS) && \
	    $(GO) test $(STRESS_FLAGS) -count=$(STRESS_COUNT) -timeout 75m $(E2E_PKGS) && \
	    (cd sdk/go && $(GO) test $(STRESS_FLAGS) -count=$(STRESS_COUNT) -timeout 30m ./...); \
	  fi

fuzz:
	@echo "==> fuzzing the spec decoder (-fuzztime=$(FUZZTIME))"
	$(GO) test -run='^$$' -timeout=$(FUZZ_TIMEOUT) -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./hcl/spec
	@echo "==> fuzzing the control plane's JSON bodies (-fuzztime=$(API_FUZZTIME))"
	$(GO) test -run='^$$' -timeout=$(FUZZ_TIMEOUT) -fuzz='^FuzzAPIBodies$$' -fuzztime=$(API_FUZZTIME) ./scheduler
	@echo "==> fuzzing the ACL policy parser (-fuzztime=$(ACL_FUZZTIME))"
	$(GO) test -run='^$$' -timeout=$(FUZZ_TIMEOUT) -fuzz='^FuzzParse$$' -fuzztime=$(ACL_FUZZTIME) ./acl
	@echo "==> fuzzing the control plane's ACL bodies and token headers (-fuzztime=$(API_FUZZTIME))"
	$(GO) test -run='^$$' -timeout=$(FUZZ_TIMEOUT) -fuzz='^FuzzACLBodies$$' -fuzztime=$(API_FUZZTIME) ./scheduler

## bench: run every benchmark (about 11 minutes on a quiet machine) and write bench/RESULTS.md
# bench/run.sh runs each package with its flags; docs/benchmarks.md says how
# each is measured. wrk comes from Debian; the Nomad deploy needs bin/nomad
# (make tools).
# The Nomad benchmarks (deploys, wake, spike, allocations across nodes)
# need bin/nomad: built here, and required (a missing one fails them).
# bench needs test-deps too: the connector benchmarks run Debian's
# Mosquitto, PostgreSQL and InfluxDB, and the java rows javac.
bench: $(BIN)/nomad test-deps
	@command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	BUTTER_REQUIRE_NOMAD=1 GO=$(GO) bench/run.sh

## dev: the whole platform on one machine (control plane, broker, pool, gateway) with examples/hello deployed
# DEV_DIR is the project make dev runs; DEV_FLAGS go to butter dev (for
# example DEV_FLAGS="-listen 127.0.0.1:9090").
DEV_DIR ?= examples/hello
DEV_FLAGS ?=
dev:
	@mkdir -p $(BIN)
	@$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/butter ./cmd/butter
	@$(GO) build -o $(BIN)/butter-sandbox ./cmd/butter-sandbox
	exec $(BIN)/butter dev $(DEV_FLAGS) $(DEV_DIR)

clean:
	rm -rf $(BIN) bench/raw
