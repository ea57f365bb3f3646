package admin

import (
	"context"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientNotRunning: no socket, and a socket nobody listens on, are
// "not running".
func TestClientNotRunning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing.sock")
	if err := NewClient(missing).Refresh(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no socket: %v, want ErrNotRunning", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if err := NewClient(stale).Refresh(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("a socket left by a dead server: %v, want ErrNotRunning", err)
	}

}

// TestClientPermissionDenied: a socket this user may not open is
// "permission denied" with its owner and mode, not "not running".
func TestClientPermissionDenied(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		t.Skip("root opens any socket; TestControlSocketPermissionDenied in cmd/stepgate covers this as nobody")
	}
	closed := filepath.Join(dir, "closed.sock")
	l, err := net.Listen("unix", closed)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(closed, 0); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	err = NewClient(closed).Refresh(ctx)
	if !errors.Is(err, ErrPermission) || errors.Is(err, ErrNotRunning) ||
		!strings.Contains(err.Error(), "permission denied (closed.sock is "+me.Username+"'s, mode 0000)") {
		t.Fatalf("a socket closed to this user: %v", err)
	}
}
