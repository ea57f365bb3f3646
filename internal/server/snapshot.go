package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// snapshotContext binds the sealed snapshot to its use.
const snapshotContext = "session snapshot"

// saveSessions seals the codes sent by e-mail or SMS and their send
// budgets into path (in the data folder) at shutdown, so that a code sent
// a minute before a restart still works after it. Sessions and failure
// counters are not in it: they live in the store, where a crash does not
// lose them and every instance finds them.
func saveSessions(core *Core, path string) error {
	var buf bytes.Buffer
	if err := core.Sessions.Snapshot(&buf); err != nil {
		return fmt.Errorf("session snapshot: %w", err)
	}
	sealed, err := core.Store.Sealer().Seal(buf.Bytes(), snapshotContext)
	if err != nil {
		return fmt.Errorf("session snapshot: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, sealed, 0o600); err != nil {
		return fmt.Errorf("session snapshot %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("session snapshot %s: %w", path, err)
	}
	return nil
}

// loadSessions restores a snapshot and removes it, so that a crash later
// never brings back codes from an older run. It returns the number of
// sessions restored (from a snapshot of a stepgate before sessions moved
// to the store; they are written there).
func loadSessions(core *Core, path string) (int, error) {
	sealed, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("session snapshot %s: %w", path, err)
	}
	defer os.Remove(path)
	raw, err := core.Store.Sealer().Open(sealed, snapshotContext)
	if err != nil {
		return 0, fmt.Errorf("session snapshot %s: %w", path, err)
	}
	return core.Sessions.Restore(bytes.NewReader(raw))
}

// restoreSessions brings back what was saved at the last shutdown.
func restoreSessions(ctx context.Context, core *Core, path string) error {
	n, err := loadSessions(core, path)
	if err != nil {
		// Losing sessions costs users a code, not safety: go on.
		core.Log.Warn("sessions from the last run not restored", "err", err)
		return nil
	}
	if n > 0 {
		if _, err := core.Verifier.Reconcile(ctx); err != nil {
			return err
		}
		core.Log.Info("sessions restored from the last run", "count", core.Sessions.Live())
	}
	return nil
}
