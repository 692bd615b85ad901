# weft — see README.md. `make demo` and `make test` are the two entry points.
GO        ?= go
BIN       := bin
ASSETS     = $(shell hack/build-assets.sh)
GOTEST    ?= $(GO) test -count=1
PKGS      ?= ./...
TIMEOUT   ?= 30m

export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all build deps assets test unit demo bench generate clean vet fmt

all: build

## deps: install missing Debian packages (iproute2, iptables, iperf3, ping, wireguard-tools)
deps:
	@hack/install-deps.sh

## assets: build kube-apiserver, etcd and stock wireguard-go into .cache/ (once)
assets:
	@hack/build-assets.sh >/dev/null

## build: all binaries into bin/
build:
	@echo "[build] go build ./cmd/... -> $(BIN)/"
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet ./...

fmt:
	@out=$$(gofmt -l cmd pkg test hack/*.go 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## unit: fast tests only (no root, no assets)
unit:
	$(GOTEST) -short $(PKGS)

## test: every tier: unit, integration (envtest, embedded etcd), netns (root), e2e (root + assets)
test: deps assets build fmt vet
	@echo "[test] all tiers; KUBEBUILDER_ASSETS=$(ASSETS)"
	KUBEBUILDER_ASSETS=$(ASSETS) WEFT_ASSETS=$(ASSETS) WEFT_BIN_DIR=$(CURDIR)/$(BIN) $(GOTEST) -timeout $(TIMEOUT) $(PKGS)
	@hack/check-leftovers.sh

## demo: a multi-cluster lab on this host, then connectivity checks
demo: deps assets build
	@hack/demo.sh

## bench: benchmark figures and ratios against baselines measured in the same run
bench: deps assets build
	WEFT_ASSETS=$(ASSETS) $(BIN)/weftctl bench wireguard
	$(BIN)/weftctl bench broker
	WEFT_ASSETS=$(ASSETS) $(BIN)/weftctl bench fabric

## generate: regenerate committed generated code (protobuf, deepcopy, CRDs)
generate:
	@hack/generate.sh

clean:
	rm -rf $(BIN)
	@echo "kept .cache/ (built assets); remove it by hand to rebuild them"
