// Package loadgen is the load harness behind `amiproxy bench`: the pieces
// that drive AMI and HTTP-manager traffic against a PBX, a bare byte relay
// or amiproxy with the same client code, and that turn what they measure
// into one comparable table.
//
// # Types and functions
//
//   - [ServeRelay] is the bare byte relay: it accepts TCP connections and
//     copies bytes to and from a target without parsing anything, the floor
//     any proxy can reach on this machine.
//   - [Client] is a minimal native-AMI client: Login, one action at a time
//     ([Client.RoundTrips]) or pipelined ([Client.Pipeline]), and
//     [Client.CountEvents], which counts events by a marker without parsing
//     (with a [MarkerCounter], which finds markers split across reads).
//   - [ServeEcho] and [ServeBlast] are the driver's ceilings: trivial servers
//     that answer actions and send events as fast as a client takes them, to
//     show that the driver does far more than the paths it measures.
//   - [HTTPSession] is one HTTP manager session (/rawman): Login, WaitEvent.
//   - [Latencies] holds round-trip samples and answers percentiles
//     (nearest rank).
//   - [RSS] reads a process's resident set size and [CPUTime] its CPU time
//     from /proc; [RaiseNoFile] lifts RLIMIT_NOFILE to its hard limit;
//     [Machine] describes the host.
//   - [ParseMetrics] sums Prometheus text-format samples by family.
//   - [Table] and [Row] print the result as Markdown or JSON, with ratios
//     against the direct path and against the relay.
//
// # Concurrency
//
// A Client or HTTPSession belongs to one goroutine at a time. ServeRelay,
// ServeEcho and ServeBlast own their per-connection goroutines and return
// only after all of them have exited (when their context ends or their
// listener fails). Everything else is plain data or pure functions; the
// parsers (/proc files, Prometheus text, markers) are fuzzed.
//
// # Non-goals
//
// It is not an AMI library: the client reads just enough of the wire
// format to find replies by ActionID and to count events, and trusts the
// peer (a benchmark talks to its own servers on loopback). It asserts no
// performance targets: [Row.Met] only compares a number with its target
// for the table.
package loadgen
