#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests and local trials (internal/pgtest
# runs it; so can you).
#
#   start.sh start DIR   initdb in DIR (created; must not hold a cluster
#                        yet), start the server on a free loopback port
#                        with its unix socket in DIR, print its port
#   start.sh standby PORT DIR
#                        a streaming standby of the server on loopback
#                        port PORT: pg_basebackup -R into DIR (created),
#                        started on a free port, which it prints; the
#                        primary is then made to wait for it on every
#                        commit (synchronous_standby_names, with
#                        synchronous_commit on): what the primary
#                        acknowledges is on the standby too
#   start.sh promote DIR promote the standby in DIR to primary
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
usage="usage: $0 start|promote|stop DIR, or $0 standby PRIMARY_PORT DIR"
if [[ -z "$cmd" || -z "$dir" ]]; then
	echo "$usage" >&2
	exit 2
fi

as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# settings: the server's, the same for a standby (which needs at least
# its primary's max_connections).
settings() {
	echo "-c listen_addresses=127.0.0.1 -c unix_socket_directories=$1 -c fsync=on -c synchronous_commit=on -c max_connections=300 -c shared_buffers=32MB"
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
			-o "-p $port $(settings "$dir")" >/dev/null 2>&1; then
			echo "$port"
			exit 0
		fi
	done
	echo "PostgreSQL did not start; its log:" >&2
	tail -n 30 "$dir/server.log" >&2 || true
	exit 1
	;;
standby)
	primary=$dir dir=${3:-}
	if [[ -z "$dir" || ! "$primary" =~ ^[0-9]+$ ]]; then
		echo "$usage" >&2
		exit 2
	fi
	mkdir -p "$dir"
	chmod 700 "$dir"
	if [[ $(id -u) == 0 ]]; then
		chown postgres: "$dir"
	fi
	# -R writes standby.signal and primary_conninfo; -X stream copies the
	# WAL written meanwhile. initdb's pg_hba.conf trusts loopback
	# replication connections.
	if ! as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1; then
		cat "$dir/basebackup.log" >&2
		exit 1
	fi
	started=
	for _ in 1 2 3 4 5 6 7 8; do
		port=$((20000 + RANDOM % 40000))
		# cluster_name becomes the standby's application_name, which the
		# primary's synchronous_standby_names names.
		if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s start \
			-o "-p $port $(settings "$dir") -c cluster_name=tvstandby" >/dev/null 2>&1; then
			started=1
			break
		fi
	done
	if [[ -z $started ]]; then
		echo "the standby did not start; its log:" >&2
		tail -n 30 "$dir/server.log" >&2 || true
		exit 1
	fi
	psql() { as_pg "$bin/psql" -X -q -t -A -h 127.0.0.1 -p "$primary" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
	psql -c "ALTER SYSTEM SET synchronous_standby_names = 'tvstandby'" -c "SELECT pg_reload_conf()" >/dev/null
	# Until the primary counts the standby as synchronous, a commit would
	# be acknowledged without it.
	for _ in $(seq 1 600); do
		if [[ $(psql -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'tvstandby' AND sync_state = 'sync'") == 1 ]]; then
			echo "$port"
			exit 0
		fi
		sleep 0.1
	done
	echo "the standby did not become synchronous" >&2
	exit 1
	;;
promote)
	as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 60 -s promote
	;;
stop)
	as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -s stop >/dev/null 2>&1 || true
	;;
*)
	echo "$usage" >&2
	exit 2
	;;
esac
