package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/amiproxy/amiproxy/proxy"
	"github.com/amiproxy/amiproxy/upstream"
)

// adminHandler serves /healthz (the process answers), /readyz (every PBX
// link is up) and /metrics (Prometheus text format, version 0.0.4).
func adminHandler(gw *proxy.Gateway, pool *upstream.Pool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var down []string
		for _, s := range pool.Stats() {
			if s.State != upstream.StateUp {
				down = append(down, s.PBX+" "+s.State.String())
			}
		}
		if len(down) > 0 {
			sort.Strings(down)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(down, ", "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(renderMetrics(gw.Stats(), pool.Stats()))
	})
	return mux
}

// metricWriter writes one metric family at a time.
type metricWriter struct{ b bytes.Buffer }

func (m *metricWriter) family(name, kind, help string) {
	fmt.Fprintf(&m.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

func (m *metricWriter) sample(name string, v float64, labels ...string) {
	m.b.WriteString(name)
	if len(labels) > 0 {
		m.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.b.WriteByte(',')
			}
			fmt.Fprintf(&m.b, "%s=%q", labels[i], labels[i+1])
		}
		m.b.WriteByte('}')
	}
	fmt.Fprintf(&m.b, " %g\n", v)
}

func renderMetrics(g proxy.Stats, pbxs []upstream.Stats) []byte {
	var m metricWriter
	gauge := func(name, help string, v float64) {
		m.family(name, "gauge", help)
		m.sample(name, v)
	}
	counter := func(name, help string, v uint64) {
		m.family(name, "counter", help)
		m.sample(name, float64(v))
	}
	gauge("amiproxy_sessions", "AMI client connections open now.", float64(g.Sessions))
	gauge("amiproxy_sessions_unauthenticated", "Open AMI client connections not logged in yet.", float64(g.Unauthenticated))
	counter("amiproxy_connections_accepted_total", "AMI client connections accepted.", g.Accepted)
	counter("amiproxy_connections_rejected_total", "Connections closed before the banner because max_unauthenticated or limits.unauthenticated_per_address was reached.", g.Rejected)
	counter("amiproxy_connections_rejected_per_address_total", "Connections closed before the banner because limits.unauthenticated_per_address was reached (also in amiproxy_connections_rejected_total).", g.RejectedAddress)
	counter("amiproxy_logins_throttled_total", "Logins refused by the login limits without checking credentials (also counted as failed).", g.LoginsThrottled)
	counter("amiproxy_actions_throttled_total", "Actions refused by limits.actions (also counted as denied).", g.ActionsThrottled)
	counter("amiproxy_handshake_timeouts_total", "Connections closed for not logging in within handshake_timeout.", g.HandshakeTimeouts)
	m.family("amiproxy_logins_total", "counter", "Login attempts by result.")
	m.sample("amiproxy_logins_total", float64(g.LoginsOK), "result", "ok")
	m.sample("amiproxy_logins_total", float64(g.LoginsFailed), "result", "failed")
	m.family("amiproxy_actions_total", "counter", "Client actions by result.")
	m.sample("amiproxy_actions_total", float64(g.ActionsAllowed), "result", "allowed")
	m.sample("amiproxy_actions_total", float64(g.ActionsDenied), "result", "denied")
	m.sample("amiproxy_actions_total", float64(g.ActionsFailed), "result", "error")
	counter("amiproxy_frame_errors_total", "Client requests refused by the framing rules.", g.FrameErrors)
	m.family("amiproxy_client_events_total", "counter", "Events towards clients by outcome.")
	m.sample("amiproxy_client_events_total", float64(g.EventsDelivered), "outcome", "delivered")
	m.sample("amiproxy_client_events_total", float64(g.EventsFiltered), "outcome", "filtered")
	m.sample("amiproxy_client_events_total", float64(g.EventsDropped), "outcome", "dropped")
	counter("amiproxy_slow_client_disconnects_total", "Clients disconnected for not reading their events.", g.SlowDisconnects)
	m.family("amiproxy_sessions_ended_total", "counter", "Live sessions ended by continuous authorisation, by reason (with a final ProxySessionEnd event).")
	m.sample("amiproxy_sessions_ended_total", float64(g.EndedRevoked), "reason", "revoked")
	m.sample("amiproxy_sessions_ended_total", float64(g.EndedExpired), "reason", "expired")
	m.sample("amiproxy_sessions_ended_total", float64(g.EndedRemoved), "reason", "removed")

	sort.Slice(pbxs, func(i, j int) bool { return pbxs[i].PBX < pbxs[j].PBX })
	m.family("amiproxy_upstream_up", "gauge", "1 when the PBX link is logged in and serving.")
	for _, s := range pbxs {
		up := 0.0
		if s.State == upstream.StateUp {
			up = 1
		}
		m.sample("amiproxy_upstream_up", up, "pbx", s.PBX)
	}
	m.family("amiproxy_upstream_info", "gauge", "Versions the PBX reported in CoreSettings.")
	for _, s := range pbxs {
		m.sample("amiproxy_upstream_info", 1, "pbx", s.PBX, "asterisk_version", s.AsteriskVersion, "ami_version", s.AMIVersion)
	}
	perPBX := []struct {
		name, help string
		v          func(upstream.Stats) uint64
	}{
		{"amiproxy_upstream_events_in_total", "Events read from the PBX.", func(s upstream.Stats) uint64 { return s.EventsIn }},
		{"amiproxy_upstream_event_deliveries_total", "Event deliveries into client queues.", func(s upstream.Stats) uint64 { return s.Delivered }},
		{"amiproxy_upstream_events_dropped_total", "Deliveries refused by a full client queue (the client is disconnected).", func(s upstream.Stats) uint64 { return s.Dropped }},
		{"amiproxy_upstream_reconnects_total", "Logins to the PBX after the first.", func(s upstream.Stats) uint64 { return s.Reconnects }},
		{"amiproxy_upstream_connect_failures_total", "Failed dial, TLS, banner, Login or CoreSettings.", func(s upstream.Stats) uint64 { return s.ConnectFailures }},
	}
	for _, f := range perPBX {
		m.family(f.name, "counter", f.help)
		for _, s := range pbxs {
			m.sample(f.name, float64(f.v(s)), "pbx", s.PBX)
		}
	}
	m.family("amiproxy_upstream_pending_actions", "gauge", "Actions waiting for the PBX's reply.")
	for _, s := range pbxs {
		m.sample("amiproxy_upstream_pending_actions", float64(s.Pending), "pbx", s.PBX)
	}
	return m.b.Bytes()
}
