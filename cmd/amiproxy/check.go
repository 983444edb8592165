package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/amiproxy/amiproxy/auth"
)

// runCheck validates a config file, secrets included, and prints every
// problem at once (like caddy validate).
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	f, _, path, err := configFlags("check", args, stderr)
	if errors.Is(err, flag.ErrHelp) || f == nil && err != nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(stdout, "%s: configuration has problems:\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stdout, "  - %s\n", line)
		}
		return errors.New("check: invalid configuration")
	}
	fmt.Fprintf(stdout, "%s: ok (%d PBXs, %d accounts, %d roles)\n", path, len(f.PBXs), len(f.Accounts), len(f.Policy.Roles))
	return nil
}

// runHashSecret reads a secret from standard input (first line) and prints
// its bcrypt hash for an account's secret_hash.
func runHashSecret(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-secret", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("cost", 12, "bcrypt cost (10-14)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hash-secret: %w", err)
	}
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return errors.New("hash-secret: give the secret on standard input, e.g. read -rs S; printf '%s\\n' \"$S\" | amiproxy hash-secret")
	}
	h, err := auth.HashSecret(auth.Secret(secret), *cost)
	if err != nil {
		return fmt.Errorf("hash-secret: %w", err)
	}
	fmt.Fprintln(stdout, h)
	return nil
}
