#!/usr/bin/env bash
# Reproduces: "Asterisk: The Definitive Guide" (O'Reilly), chapter "Asterisk
# Manager Interface (AMI)", Quick Start, "AMI over HTTP": the wget session that
# logs in to /rawman saving the session cookie in a cookie file, then pings
# and logs off with that cookie file.
# Changed: host and port (the book uses localhost:8088; here $AMI_HTTP, the
# proxy's HTTP door), "-O -" writes each reply to stdout, -q silences wget's
# progress. Credentials are the book's own (hello / world): the kit's proxy
# has that account. $1 is the path: rawman (the book), manager or mxml.
set -euo pipefail
base="${AMI_HTTP:-http://localhost:8088}"
path="${1:-rawman}"
jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT

echo "== login"
wget -q --save-cookies "$jar" --keep-session-cookies "$base/$path?action=login&username=hello&secret=world" -O -
echo "== ping"
wget -q --load-cookies "$jar" "$base/$path?action=ping" -O -
echo "== logoff"
wget -q --load-cookies "$jar" "$base/$path?action=logoff" -O -
echo "== after logoff"
wget -q --load-cookies "$jar" "$base/$path?action=ping" -O - || echo "(wget exit $?)"
