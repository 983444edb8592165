package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// main stays thin: signals, then run. All wiring lives in run.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "amiproxy:", err)
		os.Exit(1)
	}
}

const usage = `amiproxy puts a hardened, identity-aware front door on the Asterisk Manager Interface.

Usage:
  amiproxy demo [flags]           run the demo on embedded defaults (simulated PBXs east and west)
  amiproxy serve -config FILE     run the proxy
  amiproxy check -config FILE     validate a configuration, reporting every problem
  amiproxy explain -config FILE --user U [--addr IP] [--pbx P] [--action A --header 'K: V']
                                  show what the policy decides, and which rule decides it
  amiproxy import-manager-conf FILE   turn an Asterisk manager.conf into accounts and roles
  amiproxy hash-secret [-cost N]  bcrypt a secret read from standard input
  amiproxy simulate [flags]       run one simulated Asterisk for your own AMI clients
  amiproxy bench [-quick] [flags] measure direct, bare relay and amiproxy side by side
  amiproxy login --server URL     sign in (device flow) and mint a short-lived AMI secret
  amiproxy revoke --server URL --user U   revoke a user's minted secrets and sessions (admins)
  amiproxy version                print the version

Run "amiproxy <command> -h" for the flags of a command.
`

// run executes one subcommand and returns when it is done or ctx ends.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "explain":
		return runExplain(ctx, rest, stdout, stderr)
	case "import-manager-conf":
		return runImportManagerConf(ctx, rest, stdout, stderr)
	case "hash-secret":
		return runHashSecret(ctx, rest, stdin, stdout, stderr)
	case "simulate":
		return runSimulate(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "login":
		return runLogin(ctx, rest, stdout, stderr)
	case "revoke":
		return runRevoke(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "amiproxy", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}
