// Package proxy is the client side of amiproxy: the Gateway that takes a
// request from an authenticated client through policy to the right PBX and
// back, shared by both front doors — the native AMI server (TCP and TLS)
// and the HTTP manager (/rawman, /mxml, /manager and their digest variants,
// mansession_id cookie sessions and WaitEvent queues).
//
// Status: not built yet (issue 3). It will import auth, policy, upstream and
// rawman, and nothing imports it but cmd/amiproxy.
package proxy
