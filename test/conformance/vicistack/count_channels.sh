#!/usr/bin/env bash
# Reproduces: the ViciStack-style "Asterisk AMI commands guide", its nc
# one-liner that counts active channels: echo -e a Login, CoreShowChannels and
# Logoff into nc, and count the CoreShowChannel events in what comes back.
# Changed: host, port and credentials come from the environment (AMI_HOST,
# AMI_PORT, AMI_USER, AMI_SECRET; the guide has localhost 5038 and its own
# user inline); the reply is kept in a file so the script can also print the
# list's own ListItems, for the kit to compare with the count; tr strips the
# CRs before grep.
# Written from what the guide is known to contain (its text was not reachable
# from here): the one-liner's shape, not a byte-for-byte copy.
set -euo pipefail
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo -e "Action: Login\r\nUsername: ${AMI_USER:-admin}\r\nSecret: ${AMI_SECRET:-adminpass}\r\n\r\nAction: CoreShowChannels\r\n\r\nAction: Logoff\r\n\r\n" | nc "${AMI_HOST:-localhost}" "${AMI_PORT:-5038}" >"$out"
echo "channels: $(tr -d '\r' <"$out" | grep -c '^Event: CoreShowChannel$')"
tr -d '\r' <"$out" | grep '^ListItems:' || echo "ListItems: (none)"
