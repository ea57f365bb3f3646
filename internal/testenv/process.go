package testenv

import (
	"context"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a server a test starts, stops and starts again on one
// address: slapd, Dovecot.
type Process struct {
	T testing.TB
	// Name names it in failures.
	Name string
	// Addr is the address it listens on once up.
	Addr string
	// Command builds the command for each start.
	Command func() *exec.Cmd
	// Log returns its log, for failure messages.
	Log func() string

	cmd    *exec.Cmd
	waited chan struct{}
}

// Start starts the server and waits (20 s at most) until it accepts
// connections; a server that exits or never listens fails the test.
func (p *Process) Start() {
	p.T.Helper()
	if p.cmd != nil {
		return
	}
	cmd := p.Command()
	if err := cmd.Start(); err != nil {
		p.T.Fatalf("%s: %v", p.Name, err)
	}
	p.cmd, p.waited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(p.waited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.waited:
			p.cmd = nil
			p.T.Fatalf("%s exited at start-up:\n%s", p.Name, p.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Stop()
	p.T.Fatalf("%s did not listen on %s within 20s:\n%s", p.Name, p.Addr, p.Log())
}

// Stop stops the server (SIGTERM, then SIGKILL after 15 s) and waits
// until its address no longer accepts connections.
func (p *Process) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.waited
	}
	p.cmd = nil
	// Children (Dovecot's imap and auth processes) go with the master.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}
