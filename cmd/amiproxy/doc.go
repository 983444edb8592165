// Command amiproxy puts a hardened, identity-aware front door on the
// Asterisk Manager Interface.
//
// Subcommands:
//
//	amiproxy simulate [-listen 127.0.0.1:5038] [flags]   run a simulated Asterisk
//	amiproxy demo [flags]                                the embedded demo
//	amiproxy login --server URL [--cacert F] [--out F] [--ttl D] [--label L]
//	                                                     sign in with the device flow, mint an AMI secret
//	amiproxy revoke --server URL --user U [--token-file F]
//	                                                     revoke a user's secrets and sessions (admins)
//	amiproxy version
//
// This package holds wiring and process lifetime only: flags, signals and
// shutdown. It is the only package that may import certmagic.
package main
