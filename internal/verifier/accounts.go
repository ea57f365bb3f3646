package verifier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/stepgate/stepgate/internal/store"
)

// account is what a decision needs of a user: the row, and the confirmed
// authenticators with their secrets opened.
type account struct {
	user  *store.User
	mu    sync.Mutex // guards lastStep
	auths []authenticator
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
	st *store.Store

	mu      sync.RWMutex
	gen     int64
	byName  map[string]*account // nil value: no such user
	unknown int
}

// maxUnknown bounds the negative entries an attacker spraying names can
// make the cache hold.
const maxUnknown = 10000

func newAccounts(st *store.Store) *accounts {
	return &accounts{st: st, byName: map[string]*account{}}
}

// get returns the account called name, or nil when there is none.
func (c *accounts) get(ctx context.Context, name string) (*account, error) {
	key := strings.ToLower(name)
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
	u, err := c.st.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	as, err := c.st.Authenticators(ctx, u.ID, true)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", u.Name, err)
	}
	a := &account{user: u}
	for _, x := range as {
		a.auths = append(a.auths, authenticator{id: x.ID, secret: x.Secret, lastStep: x.LastStep})
	}
	return a, nil
}

// changed compares the store's generation with the cached one. When it
// moved it clears the cache and returns the epochs of the accounts now in
// the store, so that the caller can end sessions of changed accounts.
func (c *accounts) changed(ctx context.Context) (map[string]int64, bool, error) {
	gen, err := c.st.Generation(ctx)
	if err != nil {
		return nil, false, err
	}
	c.mu.RLock()
	same := gen == c.gen
	c.mu.RUnlock()
	if same {
		return nil, false, nil
	}
	users, err := c.st.Users(ctx)
	if err != nil {
		return nil, false, err
	}
	epochs := make(map[string]int64, len(users))
	for _, u := range users {
		if u.Disabled {
			epochs[strings.ToLower(u.Name)] = -1
			continue
		}
		epochs[strings.ToLower(u.Name)] = u.Epoch
	}
	c.mu.Lock()
	c.gen = gen
	c.byName = map[string]*account{}
	c.unknown = 0
	c.mu.Unlock()
	return epochs, true, nil
}
