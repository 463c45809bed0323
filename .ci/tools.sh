#!/usr/bin/env bash
# Installs the pinned code-generation tools into $(go env GOPATH)/bin.
# Cached: a tool already at the pinned version is not rebuilt.
set -euo pipefail
bin=$(go env GOPATH)/bin
want() { # name version module-path
	local name=$1 version=$2 pkg=$3 stamp="$bin/.$1.version"
	if [[ -x "$bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
		return
	fi
	echo "installing $name $version" >&2
	GOFLAGS= go install "$pkg@$version"
	echo "$version" >"$stamp"
}
want buf v1.47.2 github.com/bufbuild/buf/cmd/buf
want protoc-gen-go v1.36.5 google.golang.org/protobuf/cmd/protoc-gen-go
want protoc-gen-go-grpc v1.5.1 google.golang.org/grpc/cmd/protoc-gen-go-grpc
want staticcheck v0.6.1 honnef.co/go/tools/cmd/staticcheck
