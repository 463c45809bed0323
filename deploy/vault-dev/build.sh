#!/usr/bin/env bash
# Prints the path of a HashiCorp Vault v1.13.0 binary for integration tests,
# building it first if it is not cached yet. Build output goes to stderr so
# that callers can use `vault=$(bash deploy/vault-dev/build.sh)`.
#
# The binary is cached under
#   ${TOKENVAULT_CACHE:-$HOME/.cache/tokenvault}/vault-<first 16 hex of sha256(go.sum)>/vault
# Keying the directory by go.sum means a dependency change builds a new
# binary, while an unchanged module reuses the old one (a build takes 5-12
# minutes on 2 cores). internal/vaulttest computes the same path to find it:
# keep the two in step.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${TOKENVAULT_CACHE:-$HOME/.cache/tokenvault}

cache_dir() {
	local sum
	sum=$(sha256sum "$here/go.sum" | cut -c1-16)
	printf '%s/vault-%s' "$cache_root" "$sum"
}

if [[ -f "$here/go.sum" ]]; then
	bin="$(cache_dir)/vault"
	if [[ -x "$bin" ]]; then
		printf '%s\n' "$bin"
		exit 0
	fi
fi

mkdir -p "$cache_root"
# Serialise concurrent builds (two test runs started at once) instead of
# compiling Vault twice; the second one finds the binary when the first is done.
exec 9>"$cache_root/.vault-build.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if [[ -f "$here/go.sum" && -x "$(cache_dir)/vault" ]]; then
	printf '%s\n' "$(cache_dir)/vault"
	exit 0
fi

tmp=$(mktemp "$cache_root/.vault-build.XXXXXX")
trap 'rm -f "$tmp"' EXIT

echo "building HashiCorp Vault v1.13.0 into $cache_root (takes several minutes the first time)..." >&2
start=$SECONDS
# -mod=mod: go.sum is written on the first build and then verified against.
# GONOSUMDB: some hashicorp plugin versions Vault pins are missing from the
# checksum database; go.sum (committed) is what pins them afterwards.
# -buildvcs=false: the module sits inside the tokenvault git checkout, and
# stamping its state into a cached test binary would only add a git dependency.
(
	cd "$here"
	# env -u GOTOOLCHAIN: the machine's own Go (or what this module's go.mod
	# asks for), not the toolchain tokenvault's CI exports: this is a test
	# fixture, known to build with Go 1.26, and its cache key is go.sum alone.
	env -u GOTOOLCHAIN GOFLAGS="-mod=mod -buildvcs=false" GONOSUMDB=github.com/hashicorp \
		go build -trimpath -o "$tmp" . >&2
)
echo "built in $((SECONDS - start))s" >&2

# Compute the key after the build: with -mod=mod the build may have completed
# go.sum, and the key must describe the go.sum that is now on disk.
dir=$(cache_dir)
mkdir -p "$dir"
chmod 0755 "$tmp"
mv -f "$tmp" "$dir/vault"
trap - EXIT
printf '%s\n' "$dir/vault"
