#!/usr/bin/env bash
# Reproduces: "Asterisk: The Definitive Guide", chapter "Asterisk Manager
# Interface (AMI)", AMI over HTTP: events over HTTP are read with the
# WaitEvent action on a cookie session (login, waitevent, logoff).
# Changed: host and port ($AMI_HTTP, the proxy's HTTP door); a Timeout of 10 s
# so the script ends even on a quiet PBX; -q and "-O -" as in wget-rawman.sh.
# Credentials: the book's hello / world.
set -euo pipefail
base="${AMI_HTTP:-http://localhost:8088}"
path="${1:-rawman}"
jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT

echo "== login"
wget -q --save-cookies "$jar" --keep-session-cookies "$base/$path?action=login&username=hello&secret=world" -O -
echo "== waitevent"
wget -q --load-cookies "$jar" "$base/$path?action=waitevent&timeout=10" -O -
echo "== logoff"
wget -q --load-cookies "$jar" "$base/$path?action=logoff" -O -
