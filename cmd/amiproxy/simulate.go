package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/amiproxy/amiproxy/internal/pbxsim"
)

// simFlags are the knobs shared by simulate and demo.
type simFlags struct {
	banner        string
	astVersion    string
	eventsPerSec  int
	legacyCommand bool
	failDelay     time.Duration
	verbose       bool
}

func (s *simFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.banner, "banner", "11.0.0", `AMI version in the banner "Asterisk Call Manager/<v>" (e.g. 1.1 for Asterisk 1.8, 2.10.6 for 13)`)
	fs.StringVar(&s.astVersion, "asterisk-version", "22.10.1", "Asterisk version reported by CoreSettings")
	fs.IntVar(&s.eventsPerSec, "events-per-second", 0, "synthetic call traffic rate in events/s (0: a gentle default, -1: none)")
	fs.BoolVar(&s.legacyCommand, "legacy-command-output", false, `answer Command the Asterisk <= 13 way ("Response: Follows" ... "--END COMMAND--")`)
	fs.DurationVar(&s.failDelay, "login-fail-delay", time.Second, "delay before answering a failed Login (Asterisk sleeps 1s)")
	fs.BoolVar(&s.verbose, "v", false, "log every session")
}

func (s *simFlags) config(logger *slog.Logger) pbxsim.Config {
	delay := s.failDelay
	if delay == 0 {
		delay = -1 // pbxsim: negative means no delay, zero means the default
	}
	return pbxsim.Config{
		Banner:              s.banner,
		AsteriskVersion:     s.astVersion,
		LegacyCommandOutput: s.legacyCommand,
		LoginFailDelay:      delay,
		Logger:              logger,
	}
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5038", "address to accept AMI clients on")
	var sf simFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("simulate: unexpected arguments %q", fs.Args())
	}
	srv, err := pbxsim.New(sf.config(newLogger(stderr, sf.verbose)))
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	defer srv.Close()
	addr, err := srv.Start(*listen)
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if sf.eventsPerSec >= 0 {
		srv.StartTraffic(ctx, sf.eventsPerSec)
	}
	fmt.Fprintf(stdout, "amiproxy simulate: a simulated Asterisk %s (AMI %s) is listening on %s\n\n", sf.astVersion, sf.banner, addr)
	printAccounts(stdout)
	fmt.Fprintf(stdout, "\nTry it:\n  %s %s %s\n\nCtrl-C stops it.\n", oneLiner, hostOf(addr), portOf(addr))
	<-ctx.Done()
	fmt.Fprintln(stdout, "amiproxy simulate: stopping")
	return nil
}

// oneLiner is the shell command the README and simulate print; the tests
// run it with nc against the simulator.
const oneLiner = `printf 'Action: Login\r\nUsername: admin\r\nSecret: adminpass\r\nEvents: off\r\n\r\nAction: Ping\r\n\r\nAction: Logoff\r\n\r\n' | nc -q 2`

func printAccounts(w io.Writer) {
	fmt.Fprintln(w, "Accounts (as in the recordings' manager.conf):")
	for _, u := range pbxsim.DefaultUsers() {
		fmt.Fprintf(w, "  %-9s secret %-13s read=%-5s write=%-5s", u.Name, u.Secret, u.Read, u.Write)
		if len(u.EventFilters) > 0 {
			fmt.Fprintf(w, " %d eventfilters", len(u.EventFilters))
		}
		fmt.Fprintln(w)
	}
}

func hostOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

func portOf(a net.Addr) string {
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return ""
	}
	return p
}
