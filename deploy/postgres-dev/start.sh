#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests and local trials (internal/pgtest
# runs it; so can you).
#
#   start.sh start DIR   initdb in DIR (created; must not hold a cluster
#                        yet), start the server on a free loopback port
#                        with its unix socket in DIR, print its port
#   start.sh stop DIR    stop it (fast shutdown); DIR is left for the
#                        caller to remove
#
# Binaries: $TOKENVAULT_PG_BIN, else Debian's /usr/lib/postgresql/15/bin
# (apt-get install postgresql-15). initdb refuses to run as root, so as
# root everything runs as the postgres user (runuser). The server trusts
# loopback connections as user postgres: tests only, never a real
# deployment. fsync stays on: tests prove durability, not speed.
set -euo pipefail

bin=${TOKENVAULT_PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-} dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
	echo "usage: $0 start|stop DIR" >&2
	exit 2
fi

as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

case $cmd in
start)
	if [[ ! -x "$bin/initdb" || ! -x "$bin/pg_ctl" ]]; then
		echo "no PostgreSQL binaries in $bin: apt-get install postgresql-15, or set TOKENVAULT_PG_BIN to the directory holding initdb and pg_ctl" >&2
		exit 3
	fi
	mkdir -p "$dir"
	chmod 700 "$dir"
	if [[ $(id -u) == 0 ]]; then
		chown postgres: "$dir"
	fi
	if ! as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2
		exit 1
	fi
	# A random port; pg_ctl fails fast when it is taken, and we try another.
	for _ in 1 2 3 4 5 6 7 8; do
		port=$((20000 + RANDOM % 40000))
		if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s start \
			-o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=on -c synchronous_commit=on -c max_connections=300 -c shared_buffers=32MB" >/dev/null 2>&1; then
			echo "$port"
			exit 0
		fi
	done
	echo "PostgreSQL did not start; its log:" >&2
	tail -n 30 "$dir/server.log" >&2 || true
	exit 1
	;;
stop)
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -s stop >/dev/null 2>&1 || true
	;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac
