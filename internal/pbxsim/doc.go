// Package pbxsim is a simulated Asterisk 22.10.1 Manager Interface: the
// stand-in PBX for amiproxy's tests, benchmarks and `amiproxy demo` /
// `amiproxy simulate`, since no Asterisk can run here.
//
// It is judged by how closely it matches the byte-exact recordings of a
// real Asterisk in testdata/transcripts (conformance_test.go replays every
// tcp-*.txt recording against it and compares message by message).
//
// # Types
//
// A [Server] owns an AMI listener, its sessions and one simulated PBX: the
// lab of the recordings, with the context "lab" of extensions.conf (100 a short
// call, 200 a 30 s call, 300 the queue labq, 400 a Dial to 200, 500 a
// UserEvent, 600 a member that only rings), Local channels, AstDB, global
// variables and queue labq. [Config] selects the banner, the version, the
// users ([User], [DefaultUsers] = the recordings' manager.conf), the delay of
// a failed Login, timestampevents, SystemName and a TimeScale that speeds up
// every simulated duration. Knobs on the Server stall it, slow it, drop or
// restart its clients, inject events ([Server.Emit]) and generate call
// traffic ([Server.StartTraffic]). Config.OnAction observes every action a
// session dispatches, so a test can prove what reached the PBX.
//
// # Concurrency
//
// A Server is safe for concurrent use and shares nothing with other
// Servers (no package-level mutable state). Every goroutine has an owner
// and is waited for by [Server.Close]:
//
//   - the accept loop (Start's goroutine, or the caller's Serve);
//   - one pair per session: run, Asterisk's session thread and the only
//     writer to the connection, and readLoop, which parses requests with
//     rawman's exact framing and hands them over one at a time;
//   - the PBX scheduler, which runs every timed step (end of a Wait, media
//     wait of Answer, timeouts) under the PBX lock; an action entering the
//     PBX first runs the steps already due itself, so what it sees never
//     depends on how promptly the scheduler goroutine was scheduled;
//   - one goroutine per StartTraffic call.
//
// Events are broadcast without blocking: each session has a queue bounded
// by Config.MaxQueuedEvents (default 65536); a session whose queue would
// overflow is disconnected, and a client that does not read for
// Config.WriteTimeout (default 100 ms, Asterisk's writetimeout) is
// disconnected, so one slow client never holds up the others. A panic in a
// session closes that session only; a panic in a PBX step is logged.
//
// # What it reproduces
//
//   - Framing and banner, Login (plain and Challenge/MD5), the 1 s failed
//     login delay and close, "Already authenticated", Permission denied
//     before login, Missing action, unknown actions with the original
//     casing, Logoff, authtimeout and authlimit.
//   - Security events (SuccessfulAuth, InvalidPassword, InvalidAccountID,
//     ChallengeResponseFailed, RequestNotAllowed, RequestBadFormat).
//   - Event delivery: Privilege classes, the subset rule against read and
//     send masks, Login Events and the Events action, FullyBooted by the
//     22.10 rule, eventfilters (user and Filter action, via package policy)
//     applied to queued events only, timestampevents, SystemName.
//   - Ping, Command (>= 14 and legacy formats; "core show version",
//     "core show uptime", "core show channels", "manager show users",
//     "manager show connected", "dialplan show", "channel request hangup",
//     "database show", "queue show", unknown commands),
//     CoreSettings, CoreStatus, CoreShowChannels, Status, ListCommands
//     (the lab's action table, filtered by write class), Originate sync
//     and async with the recorded Local channel event streams and
//     OriginateResponse, Hangup by name and by /regex/ (with Cause),
//     Redirect (one channel, or two with ExtraChannel: "Dual Redirect
//     successful"), Getvar, Setvar (global and on a channel),
//     DBPut/DBGet/DBDel/DBDelTree/DBGetTree, QueueStatus, QueueSummary,
//     UserEvent, AbsoluteTimeout, WaitEvent over TCP, MixMonitor and
//     StopMixMonitor (bare "Response: Success", MIXMONITOR_FILENAME,
//     MixMonitorStart/MixMonitorStop; nothing is recorded). Monitor and
//     StopMonitor, removed in Asterisk 21, get the unknown-action reply.
//   - Asterisk-style Uniqueids (1795364117.0) and Local channel names
//     (Local/100@lab-00000000;1).
//
// # What it does not
//
//   - The HTTP manager (/rawman, /mxml, /manager, digest), TLS, ACLs,
//     allowmultiplelogin, manager.conf reloads, channel drivers other than
//     Local, dialplans other than the lab, arbitrary CLI commands.
//   - Actions the lab registers but pbxsim does not simulate pass the
//     permission check and then get the unknown-command reply.
//   - UserEvent lines are rebuilt as "Key: Value" (Asterisk copies the raw
//     line, spacing included).
//   - WaitEvent wakes as soon as an event is broadcast (Asterisk polls once
//     a second).
//   - Banner and AsteriskVersion change only what they print: an older
//     version string does not bring back older behaviour (apart from
//     LegacyCommandOutput).
//   - Originates that fail before a call exists (Local/999@lab) emit no
//     Cdr; Asterisk's CDR engine was not recorded for them.
//   - Channel lists (CoreShowChannels, Status, Hangup by regex) follow
//     Asterisk's hash-bucket order of channel names, a model fitted to the
//     three recorded orders.
//   - Event order inside one burst follows one recording; a real Asterisk
//     varies it from run to run. The events of Dial, Queue, Ringing,
//     Redirect and AMI hangups are modelled on Asterisk's source, not on
//     recordings.
//
// Non-goals: being a PBX (no media, no SIP), persistence, configurability
// of the dialplan.
package pbxsim
