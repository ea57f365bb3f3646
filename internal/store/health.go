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

// health remembers whether the last durable write (or the probe's read)
// failed for a reason of the storage's own (a full disk, an I/O error, a
// database server down or unreachable), so that readiness can say so: a
// store that cannot record a used code must not take sign-ins.
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
	if errors.Is(err, errUnresponsive) {
		return true
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
	switch {
	case err == nil:
		s.noteHealthy()
	case s.storageFault(err):
		s.noteFault(err)
	}
}

func (s *Store) noteHealthy() {
	h := &s.health
	if !h.failing.Load() {
		return
	}
	h.mu.Lock()
	h.err = nil
	h.failing.Store(false)
	h.mu.Unlock()
}

func (s *Store) noteFault(err error) {
	h := &s.health
	h.mu.Lock()
	if h.err == nil {
		h.since = s.now()
	}
	h.err = err
	h.failing.Store(true)
	h.mu.Unlock()
}

// Healthy returns nil while writes reach the disk (or the database
// server), and otherwise the last error and since when the store has
// been failing.
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
	return fmt.Errorf("store %s: failing since %s: %w", s.path, h.since.UTC().Format(time.RFC3339), h.err)
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

// probeRead reads one small row. A storage fault, or no answer within
// the probe's time (a server that drops packets), makes the store
// unhealthy; a read that works proves nothing about writes, so it does
// not make the store healthy.
func (s *Store) probeRead(ctx context.Context) error {
	var v string
	err := s.db.QueryRowContext(ctx, s.sql(`SELECT value FROM meta WHERE key = 'sealing_key_id'`)).Scan(&v)
	if err != nil && (s.storageFault(err) || errors.Is(err, context.DeadlineExceeded)) {
		s.noteFault(fmt.Errorf("reading: %w", err))
	}
	return err
}

// HealthProbe returns the check to run every few seconds: while the
// store is healthy it makes one small read, so that a database server
// that went away makes the store unhealthy (and /readyz not ready) before
// a sign-in meets it; while the store is unhealthy it retries a small
// write, so that a full disk that was freed, or a server that is back,
// makes the store healthy without waiting for a sign-in. It logs once
// when writes start failing and once when they work again.
func (s *Store) HealthProbe(log *slog.Logger) func(ctx context.Context) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	failing := false
	return func(ctx context.Context) {
		if s.Healthy() == nil {
			s.probeRead(ctx)
		}
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
