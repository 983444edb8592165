package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
)

// runDemo runs the embedded demo. Until the proxy lands (issue 3) it starts
// the two simulated PBXs, east and west, that the demo proxy will front,
// with steady sample call traffic, and says how to reach them.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	east := fs.String("east", "127.0.0.1:15038", "address of the simulated PBX east")
	west := fs.String("west", "127.0.0.1:15039", "address of the simulated PBX west")
	var sf simFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := newLogger(stderr, sf.verbose)
	addrs := map[string]net.Addr{}
	for _, pbx := range []struct{ name, addr string }{{"east", *east}, {"west", *west}} {
		cfg := sf.config(logger.With("pbx", pbx.name))
		cfg.SystemName = pbx.name
		srv, err := pbxsim.New(cfg)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", pbx.name, err)
		}
		defer srv.Close()
		a, err := srv.Start(pbx.addr)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", pbx.name, err)
		}
		if sf.eventsPerSec >= 0 {
			srv.StartTraffic(ctx, sf.eventsPerSec)
		}
		addrs[pbx.name] = a
	}
	fmt.Fprintf(stdout, `amiproxy demo (preview)

The proxy itself is not built yet (it lands with issue 3). This preview runs the
two simulated PBXs the demo proxy will front, with steady sample call traffic:

  east  %s
  west  %s

`, addrs["east"], addrs["west"])
	printAccounts(stdout)
	fmt.Fprintf(stdout, `
Watch east's events (admin sees everything; limited sees call events only):
  printf 'Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\n\r\n' | nc %s %s

Ctrl-C stops the demo.
`, hostOf(addrs["east"]), portOf(addrs["east"]))
	<-ctx.Done()
	fmt.Fprintln(stdout, "amiproxy demo: stopping")
	return nil
}
