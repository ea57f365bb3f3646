package verifier

import (
	"context"
	"errors"
	"sync"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/username"
)

// account is what a decision needs of a user: the row, and the confirmed
// authenticators with their secrets opened.
type account struct {
	user  *store.User
	mu    sync.Mutex // guards lastStep
	auths []authenticator
	apps  []appPassword
}

type authenticator struct {
	id       int64
	secret   string
	lastStep int64
}

// accounts caches accounts in memory so that a session hit costs no
// database read. It is cleared whenever the store's generation moves,
// whichever process changed it.
type accounts struct {
	st accountSource

	mu      sync.RWMutex
	gen     int64
	byName  map[string]*account // nil value: no such user
	unknown int
}

// maxUnknown bounds the negative entries an attacker spraying names can
// make the cache hold.
const maxUnknown = 10000

func newAccounts(st accountSource) *accounts {
	return &accounts{st: st, byName: map[string]*account{}}
}

// get returns the account called name, or nil when there is none. name
// is canonical (package username), the form the store keeps, so the
// cache and the database cannot disagree on which account a name is.
func (c *accounts) get(ctx context.Context, name string) (*account, error) {
	key := name
	c.mu.RLock()
	a, ok := c.byName[key]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return a, nil
	}
	a, err := c.load(ctx, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.gen == gen { // not cleared while we loaded
		if a == nil {
			if c.unknown >= maxUnknown {
				for k, v := range c.byName {
					if v == nil {
						delete(c.byName, k)
					}
				}
				c.unknown = 0
			}
			c.unknown++
		}
		c.byName[key] = a
	}
	c.mu.Unlock()
	return a, nil
}

func (c *accounts) load(ctx context.Context, name string) (*account, error) {
	u, as, err := c.st.Account(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	a := &account{user: u, apps: appPasswords(u.AppPasswords)}
	for _, x := range as {
		a.auths = append(a.auths, authenticator{id: x.ID, secret: x.Secret, lastStep: x.LastStep})
	}
	return a, nil
}

// maxChanges is how many changed accounts a refresh looks at one by one;
// beyond it, the whole cache is dropped instead.
const maxChanges = 1000

// changes brings the cache up to the store's generation. It returns the
// names of the accounts that changed and were dropped from the cache, or
// full when the whole cache was dropped (first use, a pruned log, or a
// large import).
func (c *accounts) changes(ctx context.Context) (names []string, full, changed bool, err error) {
	gen, err := c.st.Generation(ctx)
	if err != nil {
		return nil, false, false, err
	}
	c.mu.RLock()
	cur := c.gen
	c.mu.RUnlock()
	if gen == cur {
		return nil, false, false, nil
	}
	if cur > 0 {
		var complete bool
		var to int64
		names, to, complete, err = c.st.ChangesSince(ctx, cur, maxChanges)
		if err != nil {
			return nil, false, false, err
		}
		if complete {
			c.mu.Lock()
			for _, n := range names {
				if k, err := username.Canonical(n); err == nil {
					n = k
				}
				if a, ok := c.byName[n]; ok {
					if a == nil {
						c.unknown--
					}
					delete(c.byName, n)
				}
			}
			c.gen = to
			c.mu.Unlock()
			return names, false, true, nil
		}
	}
	c.mu.Lock()
	c.gen = gen
	c.byName = map[string]*account{}
	c.unknown = 0
	c.mu.Unlock()
	return nil, true, true, nil
}

// drop forgets names, so that the next get reads them from the store
// (after this process changed their rows).
func (c *accounts) drop(names ...string) {
	c.mu.Lock()
	for _, n := range names {
		if a, ok := c.byName[n]; ok {
			if a == nil {
				c.unknown--
			}
			delete(c.byName, n)
		}
	}
	c.mu.Unlock()
}

// invalidate makes the next changes call drop the whole cache.
func (c *accounts) invalidate() {
	c.mu.Lock()
	c.gen = -1
	c.mu.Unlock()
}
