package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// Command hands messages to a local program (sendmail, msmtp,
// gammu-smsd-inject, a script of one's own). The message goes on standard
// input, never on the command line, where every local user could read it
// in the process list. For e-mail that is a whole RFC 5322 message, for
// text messages the text alone. The recipient is in the environment as
// STEPGATE_TO, and an argument "{to}" is replaced by it (sendmail wants
// it there).
type Command struct {
	path string
	args []string
	from string
}

// NewCommand returns a Command transport; from is the sender of e-mail.
func NewCommand(path string, args []string, from string) (*Command, error) {
	if path == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("command: %q is not an absolute path", path)
	}
	if from != "" {
		if err := checkFrom(from); err != nil {
			return nil, err
		}
	}
	return &Command{path: path, args: append([]string(nil), args...), from: from}, nil
}

// Exit statuses of sysexits.h that retrying will not cure.
var permanentExits = map[int]bool{64: true, 65: true, 67: true, 68: true, 77: true, 78: true}

// Deliver runs the command once for m.
func (c *Command) Deliver(ctx context.Context, kind store.MethodKind, m Message) error {
	var stdin bytes.Buffer
	if kind == store.MethodEmail {
		if c.from == "" {
			return Permanent(errors.New("command: e-mail needs a from address"))
		}
		if err := writeMail(&stdin, c.from, m); err != nil {
			return err
		}
	} else {
		stdin.WriteString(m.Body)
		stdin.WriteByte('\n')
	}
	args := make([]string, len(c.args))
	for i, a := range c.args {
		args[i] = strings.ReplaceAll(a, "{to}", m.To)
	}
	cmd := exec.CommandContext(ctx, c.path, args...)
	cmd.Stdin = &stdin
	var out bytes.Buffer
	// One writer for both: exec then copies them in one goroutine.
	w := &limited{b: &out, n: 4096}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "STEPGATE_TO=" + m.To, "STEPGATE_CHANNEL=" + string(kind)}
	// Its own process group, so that a timeout ends the children of a
	// script too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	detail := strings.TrimSpace(out.String())
	if detail != "" {
		detail = ": " + detail
	}
	if ctx.Err() != nil {
		return fmt.Errorf("command %s: %w%s", c.path, ctx.Err(), detail)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && permanentExits[ee.ExitCode()] {
		return Permanent(fmt.Errorf("command %s: %w%s", c.path, err, detail))
	}
	return fmt.Errorf("command %s: %w%s", c.path, err, detail)
}

// limited keeps the first n bytes written to it.
type limited struct {
	b *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
