# FTP Pooler. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

# Pinned tools, installed into .bin/ from the Go module proxy.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# Every module; a bare `go test ./...` does not work at a go.work root.
MODULES  := gen services/internal services/dispatcher services/agent e2e
PACKAGES := $(foreach m,$(MODULES),./$(m)/...)
# Modules outside go.work (the chart checks pull in the Kubernetes API types,
# which the services must not depend on): linted and tidied, tested by their
# own targets.
STANDALONE := deploy/helm/chartcheck
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/ftp-pooler/ftp-pooler/services/internal/buildinfo.version=$(VERSION)

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Install the pinned code generators into .bin/.
	@scripts/go-tool.sh buf github.com/bufbuild/buf/cmd/buf $(BUF_VERSION)
	@scripts/go-tool.sh protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go $(PROTOC_GEN_GO_VERSION)
	@scripts/go-tool.sh protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc $(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: generate
generate: tools ## Regenerate gen/ from proto/.
	buf generate

.PHONY: build
build: ## Build bin/dispatcher and bin/agent.
	go build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./services/dispatcher/cmd/dispatcher ./services/agent/cmd/agent

.PHONY: test
test: ## Unit and in-process integration tests (embedded broker and FTP server), with -race.
	go test -race -count=1 -timeout 15m $(PACKAGES)

.PHONY: lint
lint: tools ## gofmt, go vet, buf lint and shellcheck (installed with apt-get when missing).
	scripts/shellcheck.sh
	@out=$$(gofmt -l $(MODULES) $(STANDALONE)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PACKAGES)
	go vet -tags e2e ./e2e/...
	go vet -tags 'e2e chaos' ./e2e/...
	for m in $(STANDALONE); do (cd $$m && GOWORK=off go vet ./...) || exit 1; done
	buf lint

# Files `verify` regenerates; it fails if regenerating changes any of them.
GENERATED = find gen -type f | sort; ls $(foreach m,$(MODULES) $(STANDALONE),$(m)/go.mod $(m)/go.sum) 2>/dev/null

.PHONY: verify
verify: tools ## Fail if generated code or go.mod files are stale.
	@before=$$( ($(GENERATED)) | xargs sha256sum | sha256sum ); \
	buf generate && \
	for m in $(MODULES) $(STANDALONE); do (cd $$m && GOWORK=off go mod tidy) || exit 1; done; \
	after=$$( ($(GENERATED)) | xargs sha256sum | sha256sum ); \
	if [ "$$before" != "$$after" ]; then \
		git status --short -- gen $(foreach m,$(MODULES) $(STANDALONE),$(m)/go.mod $(m)/go.sum); \
		echo "verify: generated code or go.mod/go.sum files were stale; they are now regenerated: review and commit them"; exit 1; \
	fi
	@echo "verify: generated code and go.mod files are up to date"

.PHONY: e2e
e2e: build ## End-to-end suite: the binaries against real Apache Kafka, vsftpd and pure-ftpd (root, Debian).
	scripts/e2e/run.sh

.PHONY: chaos
chaos: build ## Fault-injection suite: 2 dispatchers, 3 agents, 5,000 tasks under kill -9, restarts and a zombie agent, against real Kafka, vsftpd and pure-ftpd (root, Debian).
	scripts/chaos/run.sh

.PHONY: bench
bench: build ## Benchmarks against curl and a pooled Go client on real Kafka and vsftpd (~15 min quiet, root, Debian): writes BENCHMARKS.md and docs/bench-throughput.png.
	scripts/bench/run.sh

.PHONY: bench-smoke
bench-smoke: build ## Short benchmark for CI (< 2 min): fails below BENCH_SMOKE_RATIO (0.5) of the pooled client's small-file throughput.
	scripts/bench/run.sh -smoke

.PHONY: helm-lint
helm-lint: ## helm lint --strict, helm template with every ci/*-values.yaml, manifests checked against the Kubernetes API types.
	scripts/helm-lint.sh

.PHONY: demo
demo: build ## Run the seed scenario on an embedded broker and FTP server, print the outcomes.
	go run ./e2e/cmd/demo --bin bin

.PHONY: dev
dev: build ## Like demo, but keep running for kcat and grpcurl.
	go run ./e2e/cmd/demo --bin bin --keep

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf bin
