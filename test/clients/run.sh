#!/usr/bin/env bash
# Conformance of real AMI client libraries against an AMI endpoint.
#
#   test/clients/run.sh                      build amiproxy, start `amiproxy simulate`
#                                            on a free port, run every library against it
#   test/clients/run.sh --target HOST:PORT   run every library against an endpoint that
#                                            is already running (the proxy's AMI door)
#
# Needs Go and Node 20. Once per fresh clone (CI: every run):
#   npm ci --prefix test/clients/node
# The Go libraries come from test/clients/go/go.mod and go.sum (a separate
# module, outside the product's go.mod) and download on first use.
#
# Environment: AMI_USER / AMI_SECRET (default admin / adminpass),
# AMIPROXY_BIN (use this amiproxy binary instead of building one),
# AMI_SIM_EVENTS_PER_SECOND (simulator call traffic, default 0 = a call
# every 3 s; -1 = none), AMI_DEBUG=1 (the Node libraries' own logs).
#
# The six libraries (nami, asterisk-manager, asterisk-ami-client, amigo,
# heltonmarx/goami, goami2) run at once, each bounded at 20 s; see README.md.
# Prints "PASS|FAIL|N/A <library> <flow>" lines, then a table library x
# flow, then "clients: N passed, N failed, N skipped"; exits non-zero when
# any flow failed or did not report.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target=""
while [ $# -gt 0 ]; do
	case "$1" in
	--target) target="${2:-}"; shift 2 || { echo "run.sh: --target needs HOST:PORT" >&2; exit 2; } ;;
	--target=*) target="${1#--target=}"; shift ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

libraries=(nami asterisk-manager asterisk-ami-client amigo goami goami2)
flows=(login ping list originate event logoff md5)

if [ ! -d "$here/node/node_modules/nami" ] || [ ! -d "$here/node/node_modules/asterisk-manager" ] || [ ! -d "$here/node/node_modules/asterisk-ami-client" ]; then
	echo "run.sh: the Node libraries are not installed; run: npm ci --prefix test/clients/node" >&2
	exit 2
fi

work="$(mktemp -d)"
sim_pid=""
cleanup() {
	if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
		kill "$sim_pid" 2>/dev/null
		wait "$sim_pid" 2>/dev/null
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$target" ]; then
	bin="${AMIPROXY_BIN:-}"
	if [ -z "$bin" ]; then
		bin="$work/amiproxy"
		echo "==> go build ./cmd/amiproxy"
		if ! go -C "$root" build -o "$bin" ./cmd/amiproxy; then
			echo "run.sh: building amiproxy failed" >&2
			exit 1
		fi
	fi
	"$bin" simulate -listen 127.0.0.1:0 -login-fail-delay 0 \
		-events-per-second "${AMI_SIM_EVENTS_PER_SECOND:-0}" >"$work/sim.out" 2>"$work/sim.err" &
	sim_pid=$!
	for _ in $(seq 100); do
		target="$(sed -n 's/.*is listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/sim.out" | head -n1)"
		[ -n "$target" ] && break
		if ! kill -0 "$sim_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	if [ -z "$target" ]; then
		echo "run.sh: amiproxy simulate did not start:" >&2
		cat "$work/sim.out" "$work/sim.err" >&2
		exit 1
	fi
	echo "==> simulated Asterisk on $target"
else
	echo "==> target $target"
fi

export AMI_HOST="${target%:*}" AMI_PORT="${target##*:}"
export AMI_USER="${AMI_USER:-admin}" AMI_SECRET="${AMI_SECRET:-adminpass}"
results="$work/results"
: >"$results"
status=0

# All six libraries run at once, as independent clients of one endpoint:
# besides being quicker, that is what a proxy must get right (nami's
# ActionIDs 0,1,2… collide across clients, events fan out to everyone).
pids=()
for lib in nami asterisk-manager asterisk-ami-client; do
	timeout 30 node "$here/node/$lib.js" >"$work/node-$lib.out" 2>"$work/node-$lib.err" &
	pids+=($!)
done
go -C "$here/go" test -count=1 -v -timeout 60s ./... >"$work/go.out" 2>&1 &
go_pid=$!
for pid in "${pids[@]}"; do
	wait "$pid" || status=1
done
wait "$go_pid"
go_rc=$?
[ "$go_rc" -ne 0 ] && status=1

for lib in nami asterisk-manager asterisk-ami-client; do
	echo "==> node $lib"
	tee -a "$results" <"$work/node-$lib.out"
	if [ -s "$work/node-$lib.err" ]; then sed 's/^/    /' "$work/node-$lib.err"; fi
done
echo "==> go test (amigo, heltonmarx/goami, goami2)"
# "--- PASS: TestGoami2/login (0.00s)" -> "PASS goami2 login"; SKIP is N/A.
sed -n 's/^ *--- \(PASS\|FAIL\|SKIP\): Test\([A-Za-z0-9]*\)\/\([a-z0-9]*\) .*/\1 \2 \3/p' "$work/go.out" |
	awk '{ v = ($1 == "SKIP") ? "N/A" : $1; print v, tolower($2), $3 }' | tee -a "$results"
if [ "$go_rc" -ne 0 ]; then
	echo "---- go test output ----"
	cat "$work/go.out"
	echo "------------------------"
fi

echo
printf '%-22s' library
for f in "${flows[@]}"; do printf '%-10s' "$f"; done
echo
passed=0 failed=0 skipped=0
for lib in "${libraries[@]}"; do
	label="$lib"
	[ "$lib" = goami ] && label="heltonmarx/goami"
	printf '%-22s' "$label"
	for f in "${flows[@]}"; do
		v="$(awk -v l="$lib" -v f="$f" '{ sub(/:$/, "", $3) } $2 == l && $3 == f { print $1; exit }' "$results")"
		case "$v" in
		PASS) passed=$((passed + 1)) ;;
		N/A) skipped=$((skipped + 1)) ;;
		FAIL) failed=$((failed + 1)) ;;
		*) v="-"; failed=$((failed + 1)) ;; # no report: counts as a failure
		esac
		printf '%-10s' "$v"
	done
	echo
done
echo
[ "$failed" -gt 0 ] && status=1
echo "clients: $passed passed, $failed failed, $skipped skipped"
exit "$status"
