// Package datadir is stepgate's data folder: the account database, the
// sealing key and the running server's control socket, found from the
// folder's path alone.
package datadir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/stepgate/stepgate/internal/seal"
	"github.com/stepgate/stepgate/internal/store"
)

// KeyFileEnv names a sealing key kept outside the data folder.
const KeyFileEnv = "STEPGATE_SEALING_KEY_FILE"

// Dir is a data folder.
type Dir struct {
	Path    string
	KeyFile string
	// DSN, when set, puts the accounts in that PostgreSQL database
	// instead of the folder's SQLite file; the key, the snapshot and the
	// socket stay in the folder. PasswordFile holds the database's
	// password when the DSN has none.
	DSN, PasswordFile string
}

// New returns the data folder at path; the key file is
// $STEPGATE_SEALING_KEY_FILE or sealing.key inside the folder.
func New(path string) Dir {
	key := os.Getenv(KeyFileEnv)
	if key == "" {
		key = filepath.Join(path, "sealing.key")
	}
	return Dir{Path: path, KeyFile: key}
}

// DB is the account database.
func (d Dir) DB() string { return filepath.Join(d.Path, "stepgate.db") }

// Snapshot is where the server seals its sessions at shutdown for the
// next run. The data folder names it, not the database: a database on a
// server has no folder of this instance's own.
func (d Dir) Snapshot() string { return filepath.Join(d.Path, "sessions.snap") }

// Socket is the running server's control socket (mode 0600).
func (d Dir) Socket() string { return filepath.Join(d.Path, "control.sock") }

// Open opens the account store, creating the folder (0700), the key (0600)
// and the database on first use. A database without its key is an error
// naming the key file: a new key would make every sealed secret garbage.
func (d Dir) Open(ctx context.Context) (*store.Store, error) {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", d.Path, err)
	}
	if d.DSN != "" {
		return d.openPostgres(ctx)
	}
	var sealer *seal.Sealer
	var err error
	_, dbErr := os.Stat(d.DB())
	if dbErr == nil {
		sealer, err = seal.Load(d.KeyFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sealing key %s is missing, and the database %s was sealed with it; "+
				"restore the key file or set %s to its path", d.KeyFile, d.DB(), KeyFileEnv)
		}
	} else {
		sealer, err = seal.LoadOrCreate(d.KeyFile)
	}
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, d.DB(), sealer, store.Options{})
}

// openPostgres opens the shared database with the folder's key. Every
// instance must hold the same key: the first one to open an empty
// database makes it (or brings its own), and the database refuses any
// other, naming both.
func (d Dir) openPostgres(ctx context.Context) (*store.Store, error) {
	_, statErr := os.Stat(d.KeyFile)
	sealer, err := seal.LoadOrCreate(d.KeyFile)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenPostgres(ctx, d.DSN, d.PasswordFile, sealer, store.Options{})
	if errors.Is(err, store.ErrWrongKey) && statErr != nil {
		// A key made just now for a database sealed with another one is
		// of no use: remove it, so that copying the right key in is all
		// it takes.
		os.Remove(d.KeyFile)
		return nil, fmt.Errorf("%w (with PostgreSQL every instance needs the sealing key of the first: copy its %s here, or point %s at it)",
			err, filepath.Base(d.KeyFile), KeyFileEnv)
	}
	return st, err
}
