// Package redisstore keeps a Minter's minted-secret records and user
// revocations (an auth.Store) in Redis, so that several proxy replicas
// share them: a secret minted on one replica authenticates on every other,
// and a RevokeUser on one ends the user's sessions on all of them (each
// replica's Minter sees the change at its next poll, about a second, or at
// once when the replica runs Store.Watch and calls Minter.Sync on each
// notification).
//
// Layout, under Options.KeyPrefix (default "amiproxy:"):
//
//	version  string   change counter, incremented once per change
//	created  string   Unix milliseconds at which the store was initialised
//	records  hash     record ID -> auth.EncodeRecord JSON (the secret sealed)
//	owners   hash     record ID -> folded username, for RevokeUser
//	revoked  hash     folded username -> revocation time (19 digits of Unix ns)
//	changed  channel  PUBLISHed by every change
//
// Every change is one Lua script (EVALSHA, falling back to EVAL after a
// Redis restart empties the script cache) that makes the change and
// increments version together, so the auth.Store contract holds exactly:
// Put refuses a taken ID with auth.ErrRecordExists, RevokeUser deletes the
// user's records and keeps max(previous, at), Delete and RevokeUser that
// change nothing leave the version alone, and Load reads version, records
// and revocations in one script, at one instant. Version is one MGET.
// The scripts name all their keys, so a Redis Cluster would need the
// prefix to be a hash tag ("{amiproxy}:"); only a single Redis is tested
// (not Cluster, not Sentinel).
//
// The records hold no usable secret (Record.Sealed is encrypted with the
// Minter's key, which Redis never sees) but do reveal usernames, groups,
// claims and labels: give the proxy its own ACL user limited to its keys
// and channel, e.g.
//
//	ACL SETUSER amiproxy on >PASSWORD ~amiproxy:* &amiproxy:* +@read +@write +@scripting +@pubsub -@dangerous +ping
//
// and use TLS when Redis is not on loopback. Without the channel
// permission (&amiproxy:*) changes still work (the scripts' PUBLISH is a
// pcall) but Watch fails, and replicas learn of changes by polling only.
//
// Failures: when Redis is down or refuses, every method returns an error
// naming the server and the operation (never the password); a Minter
// keeps serving its last snapshot from memory and reports the error each
// poll, so existing secrets keep working but minting and revoking fail
// until Redis answers. Network errors are retried (three times) except for
// Put, which is never retried: a retried Put whose first attempt had
// succeeded would report its own record as taken.
//
// Data loss: Redis without persistence (or with eviction) that restarts
// loses every record and revocation. The next read or change finds the
// version key missing and starts a new counter at (Unix ms << 10),
// far above any old version (a new store starts there too, so versions
// stay positive and increase by one per change), so every Minter sees a
// different version and reloads: all
// replicas agree that every minted secret is gone (sessions opened with
// one end at the next Validate) and, unsafely, that no user is revoked
// (an OIDC token issued before a revocation works again until it
// expires). The Store logs a warning when it notices. Run Redis with
// appendonly yes and maxmemory-policy noeviction for this reason.
//
// Concurrency: a Store is safe for concurrent use; it holds two
// connection pools (go-redis v9) and starts no goroutine of its own
// except inside Watch. Close it after the Minter. Non-goals: Redis
// Cluster, client-side caching, expiring records in Redis (the Minter
// sweeps expired records).
package redisstore
