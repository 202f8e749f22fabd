#!/usr/bin/env bash
# Installs the Debian packages whose programs the tests drive for real:
# BIND's named (RFC 2136 tests), dig, the sqlite3 CLI, and rsync (make
# bench's peer for sync). Skips what is
# present; says what is missing when it cannot install (not root, no apt).
set -u
need=()
command -v named   >/dev/null 2>&1 || [ -x /usr/sbin/named ] || need+=(bind9)
command -v dig     >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v rsync   >/dev/null 2>&1 || need+=(rsync)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing ${need[*]} (tests drive them for real)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null || {
		echo "apt-get install ${need[*]} failed; the tests that need them fail in CI and skip elsewhere" >&2
	}
	# Debian starts named as a system service on install; the tests run
	# their own on loopback ports, so stop it.
	if command -v systemctl >/dev/null 2>&1; then systemctl stop named >/dev/null 2>&1 || true; fi
	pkill -x named >/dev/null 2>&1 || true
else
	echo "missing ${need[*]}: install with 'apt-get install ${need[*]}' (as root); the tests that need them skip outside CI" >&2
fi
exit 0
