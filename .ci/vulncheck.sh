#!/usr/bin/env bash
# Known vulnerabilities: govulncheck over the main module, against a pinned
# snapshot of the Go vulnerability database. Fails if our code reaches a
# vulnerable function of a dependency or of the standard library (the Go
# that runs this: see the toolchain line in go.mod).
#
# Why a snapshot: the database is the module golang.org/x/vulndb, fetched
# through the Go module proxy like any dependency (vuln.go.dev itself is not
# reachable from every build machine), and a pinned version keeps CI
# reproducible: CI turns red because of a change in this repository, not
# because an advisory was published overnight. To check against newer
# advisories, put a newer pseudo-version of golang.org/x/vulndb in
# .ci/vulndb.version, run this, and fix or upgrade what it reports.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(go env GOPATH)/bin
version=$(cat .ci/vulndb.version)
db=${TOKENVAULT_CACHE:-$HOME/.cache/tokenvault}/vulndb-$version
if [[ ! -f "$db/index/db.json" ]]; then
	src=$(GOFLAGS= go mod download -json "golang.org/x/vulndb@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [[ -z "$src" || ! -d "$src/data/osv" ]]; then
		echo "vulncheck: golang.org/x/vulndb@$version has no data/osv" >&2
		exit 1
	fi
	rm -rf "$db.tmp"
	mkdir -p "$(dirname "$db")"
	"$bin/indexdb" -vulns "$src/data/osv" -out "$db.tmp"
	rm -rf "$db"
	mv "$db.tmp" "$db"
fi
echo "govulncheck $(go env GOVERSION), database golang.org/x/vulndb@$version" >&2
"$bin/govulncheck" -db "file://$db" ./...
