package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrStepUsed is returned by ConsumeStep when the time step, or a later
// one, was already accepted for the authenticator: the code is a replay.
var ErrStepUsed = errors.New("time step already used")

// ConsumeStep durably records that step was accepted for authenticator id.
// It fails with ErrStepUsed when that step or a later one was accepted
// before, by this process or another one. It returns once the record is
// on disk: many concurrent calls share one transaction and one sync
// (group commit), so the replay guard is as durable as a directory's and
// far cheaper per sign-in.
func (s *Store) ConsumeStep(ctx context.Context, id, step int64) error {
	return s.steps.submit(ctx, &stepRequest{id: id, step: step, done: make(chan error, 1)}, s.path)
}

// stepRequest is one piece of work of a group commit: a time step to
// record (id non-zero), a session to write (with the step, only when the
// step is accepted), or lockout events.
type stepRequest struct {
	id, step int64
	sess     *SessionRecord
	events   []FailureEvent
	done     chan error
}

func (c *stepCommitter) submit(ctx context.Context, req *stepRequest, where string) error {
	select {
	case c.in <- req:
	case <-c.quit:
		return fmt.Errorf("store %s: closed", where)
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the request is decided whatever the caller's context
	// does: giving up half-way would leave the step consumed without a
	// session, or the opposite.
	return <-req.done
}

type stepCommitter struct {
	db      *sql.DB
	query   string      // stepUpdate, bound
	upsert  string      // sessionUpsert, bound
	insert  string      // failureInsert, bound
	note    func(error) // told how each commit went (store health)
	update  *sql.Stmt   // used only by run's goroutine
	saveSes *sql.Stmt   // likewise
	addFail *sql.Stmt   // likewise
	in      chan *stepRequest
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// maxBatch bounds one group commit.
const maxBatch = 512

// stepUpdate records an accepted step unless it, or a later one, was
// accepted before.
const stepUpdate = `UPDATE authenticators SET last_step = ? WHERE id = ? AND last_step < ?`

// newStepCommitter starts the group committer; bind binds its statements
// for the store's engine.
func newStepCommitter(db *sql.DB, bind func(string) string, note func(error)) *stepCommitter {
	c := &stepCommitter{db: db, query: bind(stepUpdate), upsert: bind(sessionUpsert), insert: bind(failureInsert),
		note: note, in: make(chan *stepRequest, maxBatch), quit: make(chan struct{})}
	c.wg.Add(1)
	go c.run()
	return c
}

func (c *stepCommitter) close() {
	c.once.Do(func() { close(c.quit) })
	c.wg.Wait()
	for _, st := range []*sql.Stmt{c.update, c.saveSes, c.addFail} {
		if st != nil {
			st.Close()
		}
	}
}

func (c *stepCommitter) run() {
	defer c.wg.Done()
	batch := make([]*stepRequest, 0, maxBatch)
	for {
		select {
		case <-c.quit:
			// Drain what was queued before the close.
			for {
				select {
				case r := <-c.in:
					batch = append(batch, r)
				default:
					if len(batch) > 0 {
						c.commit(batch)
					}
					return
				}
			}
		case r := <-c.in:
			batch = append(batch[:0], r)
			// Everything that queued up while the last sync ran goes into
			// this transaction.
		more:
			for len(batch) < maxBatch {
				select {
				case r := <-c.in:
					batch = append(batch, r)
				default:
					break more
				}
			}
			c.commit(batch)
			batch = batch[:0]
		}
	}
}

// commitTimeout bounds one group commit. A database server that stopped
// answering (a network that drops packets, a frozen host) would otherwise
// hold every sign-in that waits for the commit until TCP gives up,
// minutes later; past it the batch is answered unavailable (and the
// steps are not used, unless the server did commit: then a retry is a
// replay, never a second acceptance).
var commitTimeout = 10 * time.Second

// errUnresponsive marks a commit that got no answer within commitTimeout:
// a storage fault, whatever the driver calls it.
var errUnresponsive = errors.New("the database did not answer")

func (c *stepCommitter) commit(batch []*stepRequest) {
	results := make([]error, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := func() error {
		tx, err := c.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if c.update == nil {
			// Prepared once for the committer's life: parsing the
			// statement (and compiling its trigger) per batch costs
			// more than running it.
			for _, p := range []struct {
				dst **sql.Stmt
				q   string
			}{{&c.update, c.query}, {&c.saveSes, c.upsert}, {&c.addFail, c.insert}} {
				if *p.dst, err = c.db.PrepareContext(ctx, p.q); err != nil {
					tx.Rollback()
					return err
				}
			}
		}
		var update, save, add *sql.Stmt
		defer func() {
			for _, st := range []*sql.Stmt{update, save, add} {
				if st != nil {
					st.Close()
				}
			}
		}()
		for i, r := range batch {
			if r.id != 0 {
				if update == nil {
					update = tx.StmtContext(ctx, c.update)
				}
				res, err := update.ExecContext(ctx, r.step, r.id, r.step)
				if err != nil {
					tx.Rollback()
					return err
				}
				if n, _ := res.RowsAffected(); n == 0 {
					results[i] = ErrStepUsed
					continue // a replayed step opens no session
				}
			}
			if r.sess != nil {
				if save == nil {
					save = tx.StmtContext(ctx, c.saveSes)
				}
				if _, err := save.ExecContext(ctx, sessionArgs(r.sess)...); err != nil {
					tx.Rollback()
					return err
				}
			}
			for j := range r.events {
				if add == nil {
					add = tx.StmtContext(ctx, c.addFail)
				}
				if _, err := add.ExecContext(ctx, eventArgs(&r.events[j])...); err != nil {
					tx.Rollback()
					return err
				}
			}
		}
		return tx.Commit()
	}()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w within %s: %w", errUnresponsive, commitTimeout, err)
	}
	c.note(err)
	for i, r := range batch {
		if err != nil {
			what := "recording a used time step"
			switch {
			case r.id == 0 && r.sess != nil:
				what = "writing a session"
			case r.id == 0:
				what = "recording failures"
			}
			r.done <- fmt.Errorf("%s: %w", what, err)
		} else {
			r.done <- results[i]
		}
	}
}

// LastStep returns the last accepted step of an authenticator.
func (s *Store) LastStep(ctx context.Context, id int64) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, s.sql(`SELECT last_step FROM authenticators WHERE id = ?`), id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("authenticator %d: %w", id, ErrNotFound)
	}
	return v, err
}
