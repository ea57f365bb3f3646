// Command stepgate puts two-step verification in front of LDAP and IMAP
// clients that can only send a password.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stepgate/stepgate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
