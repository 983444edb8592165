#!/usr/bin/env bash
# Reproduces: "Asterisk: The Definitive Guide", chapter "Asterisk Manager
# Interface (AMI)", AMI over HTTP: the digest-authenticated variants of the
# manager paths (/arawman, /amanager, /amxml) need no Login action and no
# cookie: every request carries HTTP digest credentials (curl --digest).
# Changed: host and port ($AMI_HTTP, the proxy's HTTP door). Credentials: the
# book's hello / world. $1 is the path: arawman, amanager or amxml.
set -euo pipefail
base="${AMI_HTTP:-http://localhost:8088}"
path="${1:-arawman}"

echo "== ping"
curl -s --digest -u hello:world "$base/$path?action=ping"
echo "== corestatus"
curl -s --digest -u hello:world "$base/$path?action=corestatus"
echo "== wrong secret"
curl -s -o /dev/null -w '%{http_code}\n' --digest -u hello:wrong "$base/$path?action=ping"
