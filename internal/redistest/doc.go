// Package redistest runs a real redis-server on loopback for tests:
// Start(t, Options) starts /usr/bin/redis-server (or $REDIS_SERVER_BIN, or
// redis-server from PATH) on a free 127.0.0.1 port with no persistence
// (--save "" --appendonly no), waits until it answers PING, and kills it in
// t.Cleanup. Kill and Restart stop it and start it again on the same port
// with an empty data set, which is what a Redis restart without
// persistence looks like to its clients.
//
// Options.Password sets requirepass for the default user; Options.Args
// passes further configuration (an ACL "--user" line, say);
// Options.TLSCertFile and TLSKeyFile make it TLS-only, with a certificate
// from SelfSignedCert for instance.
//
// The binary comes from Debian's redis-server package (7.0 on Debian 12);
// apt starts no service here. A missing binary fails the test with the
// install command rather than skipping it.
//
// Concurrency: a *Server is safe for concurrent use; each Start runs its
// own process in its own temporary directory. Non-goals: persistence,
// TLS, clustering and Sentinel.
package redistest
