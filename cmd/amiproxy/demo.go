package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
	"github.com/amiproxy/amiproxy/policy"
)

// demoUsers are the accounts the demo prints and its tests use.
var demoUsers = []struct{ name, secret, what string }{
	{"admin", "adminpass", "everything on east and west; Command: core/dialplan/module/pjsip/queue show"},
	{"operator", "operatorpass", "read call, write call+originate into context lab only, east only"},
	{"viewer", "viewerpass", "read call, write nothing, east and west"},
}

// runDemo runs the whole product on embedded defaults: two simulated PBXs
// (east, west) with steady sample call traffic behind the proxy, with a
// self-signed certificate and three demo users. No files are needed.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	amiAddr := fs.String("ami", "127.0.0.1:5038", "plaintext AMI listener (loopback only)")
	amiTLSAddr := fs.String("ami-tls", "127.0.0.1:5039", "AMI over TLS listener")
	httpAddr := fs.String("http", "127.0.0.1:8088", "HTTP manager listener, plain text (loopback only)")
	httpsAddr := fs.String("https", "127.0.0.1:8443", "HTTP manager listener over TLS")
	adminAddr := fs.String("admin", "127.0.0.1:9038", "/healthz, /readyz and /metrics listener")
	var sf simFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := newLogger(stderr, sf.verbose)

	// The proxy's own service account on the simulated PBXs.
	svc := make([]byte, 16)
	_, _ = rand.Read(svc)
	svcSecret := hex.EncodeToString(svc)

	f := &File{}
	for _, name := range []string{"east", "west"} {
		cfg := sf.config(logger.With("pbx", name))
		cfg.SystemName = name
		cfg.Users = append(pbxsim.DefaultUsers(), pbxsim.User{Name: "amiproxy", Secret: svcSecret, Read: "all", Write: "all"})
		sim, err := pbxsim.New(cfg)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		defer sim.Close()
		a, err := sim.Start("127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		if sf.eventsPerSec >= 0 {
			sim.StartTraffic(ctx, sf.eventsPerSec)
		}
		f.PBXs = append(f.PBXs, PBX{Name: name, Address: a.String(), Username: "amiproxy", AuthMD5: true, Secret: SecretSource{Value: svcSecret}})
	}
	if err := f.Listen.AMI.UnmarshalText([]byte(*amiAddr)); err != nil {
		return fmt.Errorf("demo: -ami: %w", err)
	}
	if err := f.Listen.AMITLS.UnmarshalText([]byte(*amiTLSAddr)); err != nil {
		return fmt.Errorf("demo: -ami-tls: %w", err)
	}
	for _, l := range []struct {
		flag, value string
		dst         *Addr
	}{{"admin", *adminAddr, &f.Listen.Admin}, {"http", *httpAddr, &f.Listen.HTTP}, {"https", *httpsAddr, &f.Listen.HTTPS}} {
		if err := l.dst.UnmarshalText([]byte(l.value)); err != nil {
			return fmt.Errorf("demo: -%s: %w", l.flag, err)
		}
	}
	f.TLS = TLS{Mode: TLSSelfSigned, Names: []string{"localhost"}}
	f.Proxy = Proxy{DefaultPBX: "east", LoginFailDelay: Duration(time.Second)}
	for _, u := range demoUsers {
		f.Accounts = append(f.Accounts, Account{Username: u.name, Secret: SecretSource{Value: u.secret}})
	}
	f.Policy = policy.Config{
		Roles: []policy.Role{
			// Command and config files need explicit lists, whatever the
			// write classes: the command class is root on the PBX.
			{Name: "admin", Read: "all", Write: "all", PBXs: []string{"*"}, Rules: policy.Rules{
				Commands:    []string{"core show", "dialplan show", "module show", "pjsip show", "queue show"},
				ConfigFiles: []string{"*.conf"},
			}},
			// The operator may place calls only through the lab dialplan.
			{Name: "operator", Read: "call", Write: "call,originate", PBXs: []string{"east"}, Rules: policy.Rules{
				Contexts: []string{"lab"},
			}},
			{Name: "viewer", Read: "call", Write: "none", PBXs: []string{"*"}},
		},
		Users: map[string][]string{"admin": {"admin"}, "operator": {"operator"}, "viewer": {"viewer"}},
	}
	if err := f.Validate(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	rc, err := f.build(osEnv, os.ReadFile)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	tlsCfg, stopTLS, err := newTLS(ctx, f.TLS, logger)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer stopTLS()

	ready := func(addrs map[string]net.Addr) {
		plain, secure := addrs["ami"], addrs["ami_tls"]
		fmt.Fprintf(stdout, `amiproxy demo: two simulated PBXs (east, west) with sample call traffic, behind the proxy.

  AMI (plaintext, loopback)  %s
  AMI over TLS               %s   (self-signed; SHA-256 %s)
  HTTP manager               http://%s/rawman   (/mxml, /manager; /pbx/west/rawman for west)
  HTTP manager over TLS      https://%s/rawman
  health and metrics         http://%s/metrics  (/healthz, /readyz)

Users:
`, plain, secure, certFingerprint(tlsCfg), addrs["http"], addrs["https"], addrs["admin"])
		for _, u := range demoUsers {
			fmt.Fprintf(stdout, "  %-9s %-13s %s\n", u.name, u.secret, u.what)
		}
		h, p := hostOf(plain), portOf(plain)
		fmt.Fprintf(stdout, `
Try it (copy and paste):
  # log in, ping east, ask west for its settings, log off
  printf 'Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\nAction: Ping\r\n\r\nAction: CoreSettings\r\nServer: west\r\n\r\nAction: Logoff\r\n\r\n' | nc -q 2 %[1]s %[2]s
  # operator may not run Command: "Permission denied"
  printf 'Action: Login\r\nUsername: operator\r\nSecret: operatorpass\r\nEvents: off\r\n\r\nAction: Command\r\nCommand: core show version\r\n\r\nAction: Logoff\r\n\r\n' | nc -q 2 %[1]s %[2]s
  # watch east's call events as viewer (Ctrl-C to stop)
  printf 'Action: Login\r\nUsername: viewer\r\nSecret: viewerpass\r\n\r\n' | nc %[1]s %[2]s
  # the same over TLS
  printf 'Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\n\r\n' | openssl s_client -quiet -connect %[3]s
  # the HTTP manager with a cookie jar: login, ping, wait for events, logoff
  curl -s -c /tmp/ami.jar -b /tmp/ami.jar 'http://%[4]s/rawman?action=login&username=admin&secret=adminpass'
  curl -s -c /tmp/ami.jar -b /tmp/ami.jar 'http://%[4]s/rawman?action=ping'
  curl -s -c /tmp/ami.jar -b /tmp/ami.jar 'http://%[4]s/mxml?action=waitevent&timeout=5'
  curl -s -c /tmp/ami.jar -b /tmp/ami.jar 'http://%[4]s/rawman?action=logoff'
  # HTTPS and digest authentication (no Login action)
  curl -sk --digest -u admin:adminpass 'https://%[5]s/arawman?action=ping'

Flags: -ami, -ami-tls, -http, -https, -admin, -events-per-second, -v. Ctrl-C stops the demo.
`, h, p, secure, addrs["http"], addrs["https"])
	}
	audit := slog.New(slog.NewJSONHandler(stderr, nil)) // one JSON line per login and action
	err = serveConfig(ctx, f, rc, serveOptions{logger: logger, audit: audit, tlsConfig: tlsCfg, ready: ready})
	fmt.Fprintln(stdout, "amiproxy demo: stopped")
	return err
}
