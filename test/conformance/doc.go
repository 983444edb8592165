// Package conformance is the conformance kit: one command runs every client
// flow amiproxy's users bring against a demo-style setup (a simulated
// Asterisk 22.10.1 from internal/pbxsim behind an `amiproxy serve` process
// built from this tree, on free loopback ports) and prints a pass/fail table.
//
//	go test ./test/conformance -run Kit -v
//
// What it runs (kit_test.go holds the list):
//
//   - the six client libraries of test/clients (nami, asterisk-manager,
//     asterisk-ami-client, goami2, heltonmarx/goami, amigo): login, Ping, a
//     list, Originate, events, logoff, Challenge/MD5 login where the library
//     can, and reconnection after the proxy process is stopped and started
//     again on the same ports;
//   - the AMI chapter of "Asterisk: The Definitive Guide": its telnet
//     session on the native port, its wget session against /rawman with a
//     cookie file, the same against /manager and /mxml, WaitEvent over HTTP,
//     and the digest variants with curl --digest (book/);
//   - a ViciStack-style AMI commands guide: its Python raw-socket
//     click-to-dial, its Node.js event monitor, its nc one-liner counting
//     channels (vicistack/), and its 15 actions sent by an allowed and by a
//     denied user.
//
// Every flow reports PASS or FAIL; a failure prints the exchange that
// differed. A denied action must get the proxy's "Permission denied" and
// must not reach the PBX: the simulator's OnAction hook records every
// action it receives.
//
// The kit needs Go, Node 20 with npm (the Node client libraries are
// installed from test/clients/node's lockfile when missing), python3, wget,
// curl and nc; nothing from the internet at run time.
//
// Concurrency: the flows run one after another against one setup, except
// the client libraries, which run at once as independent clients. Non-goals:
// load, TLS doors (covered by cmd/amiproxy's tests), a real Asterisk.
package conformance
