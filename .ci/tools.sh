#!/usr/bin/env bash
# Installs the pinned code-generation and analysis tools into $(go env GOPATH)/bin.
# Cached: a tool already at the pinned version is not rebuilt.
set -euo pipefail
bin=$(go env GOPATH)/bin
# Stamps name the Go that built each tool too: staticcheck and govulncheck
# must be built by the toolchain whose code they analyse.
goversion=$(go env GOVERSION)
want() { # name version module-path
	local name=$1 version=$2 pkg=$3 stamp="$bin/.$1.version"
	if [[ -x "$bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version $goversion" ]]; then
		return
	fi
	echo "installing $name $version" >&2
	GOFLAGS= go install "$pkg@$version"
	echo "$version $goversion" >"$stamp"
}
want buf v1.47.2 github.com/bufbuild/buf/cmd/buf
want protoc-gen-go v1.36.5 google.golang.org/protobuf/cmd/protoc-gen-go
want protoc-gen-go-grpc v1.5.1 google.golang.org/grpc/cmd/protoc-gen-go-grpc
want staticcheck v0.8.2 honnef.co/go/tools/cmd/staticcheck
want govulncheck v1.9.0 golang.org/x/vuln/cmd/govulncheck
# indexdb turns the vulnerability database's OSV files into the layout
# govulncheck reads (.ci/vulncheck.sh); its version is the database snapshot.
want indexdb "$(cat "$(dirname "${BASH_SOURCE[0]}")/vulndb.version")" golang.org/x/vulndb/cmd/indexdb
