package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// health remembers whether the last durable write failed for a reason of
// the storage's own (a full disk, an I/O error), so that readiness can say
// so: a store that cannot record a used code must not take sign-ins.
type health struct {
	failing atomic.Bool // fast path: successful writes only read this
	mu      sync.Mutex
	err     error
	since   time.Time
}

// storageFault reports whether err says the storage itself cannot take
// writes, as opposed to a constraint, a replay or a cancelled request.
func (s *Store) storageFault(err error) bool {
	if err == nil {
		return false
	}
	if fault, known := s.d.storageFault(err); known {
		return fault
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS)
}

// noteWrite records the outcome of a durable write: a storage fault makes
// the store unhealthy, and any write that reached the disk makes it
// healthy again.
func (s *Store) noteWrite(err error) {
	h := &s.health
	switch {
	case err == nil:
		if !h.failing.Load() {
			return
		}
		h.mu.Lock()
		h.err = nil
		h.failing.Store(false)
		h.mu.Unlock()
	case s.storageFault(err):
		h.mu.Lock()
		if h.err == nil {
			h.since = s.now()
		}
		h.err = err
		h.failing.Store(true)
		h.mu.Unlock()
	}
}

// Healthy returns nil while writes reach the disk, and otherwise the
// last write error and since when writes have been failing.
func (s *Store) Healthy() error {
	h := &s.health
	if !h.failing.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return nil
	}
	return fmt.Errorf("store %s: writes failing since %s: %w", s.path, h.since.UTC().Format(time.RFC3339), h.err)
}

// probeWrite makes one small durable write, so that a store whose writes
// failed finds out by itself when they work again (space freed), without
// waiting for a sign-in to risk it.
func (s *Store) probeWrite(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, s.sql(`INSERT INTO meta (key, value) VALUES ('write_probe', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`), s.now().UTC().Format(time.RFC3339Nano))
	s.noteWrite(err)
	return err
}

// HealthProbe returns the check to run every few seconds: while the
// store is unhealthy it retries a small write, so that a full disk that
// was freed makes the store healthy (and /readyz ready) without waiting
// for a sign-in, and it logs once when writes start failing and once when
// they work again.
func (s *Store) HealthProbe(log *slog.Logger) func(ctx context.Context) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failing := false
	return func(ctx context.Context) {
		if err := s.Healthy(); err != nil {
			if !failing {
				log.Error("store writes failing: sign-ins that need a write answer unavailable and /readyz says not ready", "err", err)
				failing = true
			}
			s.probeWrite(ctx)
		}
		if failing && s.Healthy() == nil {
			log.Info("store writes work again", "path", s.path)
			failing = false
		}
	}
}
