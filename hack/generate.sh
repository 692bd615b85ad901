#!/usr/bin/env bash
# generate.sh regenerates the committed generated code:
#
#   pkg/apis/broker/v1alpha1/*.pb.go   from broker.proto (protobuf + gRPC)
#   pkg/apis/weft/v1alpha1/zz_generated.deepcopy.go and deploy/crds/*.yaml
#                                      from the Go types (controller-gen)
#
# The generators are built from the separate module hack/tools (pinned
# versions, see hack/tools/tools.go) into the git-ignored .cache/tools/bin.
# No protoc binary is needed: hack/tools/cmd/weft-protoc compiles .proto files
# with github.com/bufbuild/protocompile and drives the protoc-gen-* plugins.
# The tools are rebuilt only when hack/tools changes (or the Go version does),
# so a second run only regenerates (a few seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEFT_CACHE:-$ROOT/.cache}"
BIN="$CACHE/tools/bin"
TOOLS="$ROOT/hack/tools"

log() { printf '[generate] %s\n' "$*" >&2; }

# stamp identifies the tool build: the tools module (versions and sources) and
# the Go toolchain.
stamp() {
	{
		go env GOVERSION
		cd "$TOOLS" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum
	} | sha256sum | cut -d' ' -f1
}

install_tools() {
	local want have=""
	want="$(stamp)"
	[[ -f "$BIN/.stamp" ]] && have="$(cat "$BIN/.stamp")"
	if [[ "$want" == "$have" && -x "$BIN/weft-protoc" && -x "$BIN/protoc-gen-go" && -x "$BIN/protoc-gen-go-grpc" && -x "$BIN/controller-gen" ]]; then
		log "tools up to date in ${BIN#"$ROOT"/}"
		return
	fi
	log "installing tools from hack/tools into ${BIN#"$ROOT"/} (about a minute, once)"
	mkdir -p "$BIN"
	rm -f "$BIN/.stamp"
	(
		cd "$TOOLS"
		export GOBIN="$BIN" GOFLAGS=-mod=mod CGO_ENABLED=0
		go install -trimpath \
			google.golang.org/protobuf/cmd/protoc-gen-go \
			google.golang.org/grpc/cmd/protoc-gen-go-grpc \
			./cmd/weft-protoc
		cd controller-gen && go install -trimpath sigs.k8s.io/controller-tools/cmd/controller-gen
	)
	echo "$want" >"$BIN/.stamp"
	log "tools: $("$BIN/protoc-gen-go" --version), $("$BIN/protoc-gen-go-grpc" --version)"
}

gen_proto() {
	local dir="$1" # proto file relative to pkg/apis
	log "protobuf: pkg/apis/$dir"
	"$BIN/weft-protoc" -I "$ROOT/pkg/apis" \
		-plugin "$BIN/protoc-gen-go=paths=source_relative" \
		-plugin "$BIN/protoc-gen-go-grpc=paths=source_relative" \
		-out "$ROOT/pkg/apis" \
		"$dir"
}

install_tools
gen_proto broker/v1alpha1/broker.proto
log "controller-gen: pkg/apis/weft -> deepcopy, deploy/crds"
(cd "$ROOT" && "$BIN/controller-gen" object paths=./pkg/apis/weft/... crd:crdVersions=v1 output:crd:dir=./deploy/crds)
log "done"
