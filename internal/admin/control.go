package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/stepgate/stepgate/internal/session"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// SessionInfo is a session as the control API shows it; it holds nothing
// secret.
type SessionInfo struct {
	ID       string    `json:"id"`
	User     string    `json:"user"`
	Protocol string    `json:"protocol"`
	Remote   string    `json:"remote"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	Expires  time.Time `json:"expires"`
}

// RevokeRequest names what to revoke: one session, or every session of a
// user (which also moves the account's epoch, a security change).
type RevokeRequest struct {
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
}

// RevokeResult says how many sessions ended.
type RevokeResult struct {
	Revoked int `json:"revoked"`
}

// Control serves the control API of a running server.
type Control struct {
	Store    *store.Store
	Verifier *verifier.Verifier
	Log      *slog.Logger
}

// Handler is the control API.
func (c *Control) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sessions", c.list)
	mux.HandleFunc("POST /v1/sessions/revoke", c.revoke)
	mux.HandleFunc("POST /v1/refresh", c.refresh)
	mux.HandleFunc("POST /v1/check", c.check)
	return mux
}

// CheckRequest is `stepgate check`'s attempt, decided by the running
// server so that it shares the server's sessions and replay guard.
type CheckRequest struct {
	User   string `json:"user"`
	Secret string `json:"secret"`
}

// CheckResult is the decision. The internal reason goes back too: only
// the socket's owner, who may read the audit log anyway, can ask.
type CheckResult struct {
	Result  verifier.Result `json:"result"`
	Reason  verifier.Reason `json:"reason"`
	Message string          `json:"message,omitempty"`
}

// maxCheckBody bounds a check request: a name and a secret of at most
// 1 KiB each, JSON-escaped (up to 6 bytes a byte), with room to spare.
const maxCheckBody = 16 << 10

// check runs the decision a front end runs, as protocol "cli" with no
// remote address. Neither the request nor the decoder's error is logged:
// the body holds the secret.
func (c *Control) check(w http.ResponseWriter, r *http.Request) {
	var req CheckRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCheckBody)).Decode(&req); err != nil || req.User == "" {
		writeError(w, http.StatusBadRequest, "give user and secret")
		return
	}
	d := c.Verifier.Verify(r.Context(), verifier.Attempt{Protocol: "cli", User: req.User, Secret: req.Secret})
	writeJSON(w, http.StatusOK, CheckResult{Result: d.Result, Reason: d.Reason, Message: d.Message})
}

// list shows the sessions of every instance: the store holds them all
// (this instance's memory only those used here). Without a store, the
// sessions held here.
func (c *Control) list(w http.ResponseWriter, r *http.Request) {
	out := []SessionInfo{}
	user := r.URL.Query().Get("user")
	sessions := c.Verifier.Sessions()
	if sessions.Durable() && c.Store != nil {
		stored, err := c.Store.Sessions(r.Context(), user)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		for _, rec := range stored {
			info := SessionInfo{ID: rec.ID, User: rec.User, Protocol: rec.Protocol, Remote: rec.Remote,
				Created: rec.Created.UTC(), LastUsed: rec.LastUsed.UTC(), Expires: rec.Expires.UTC()}
			if s, ok := sessions.Get(rec.ID); ok {
				info = Info(s) // used here since the last write of its use
			} else if !sessions.LiveRecord(&rec) {
				continue
			}
			out = append(out, info)
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	for _, s := range sessions.List(user) {
		out = append(out, Info(s))
	}
	writeJSON(w, http.StatusOK, out)
}

// Info describes a session for the API.
func Info(s *session.Session) SessionInfo {
	return SessionInfo{ID: s.ID, User: s.User, Protocol: s.Protocol, Remote: s.Remote,
		Created: s.Created.UTC(), LastUsed: s.LastUsed().UTC(), Expires: s.Expires.UTC()}
}

func (c *Control) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || (req.ID == "") == (req.User == "") {
		writeError(w, http.StatusBadRequest, "give exactly one of id and user")
		return
	}
	sessions := c.Verifier.Sessions()
	if req.ID != "" {
		// Deleted from the store, and logged as a change: every other
		// instance closes it on its next poll (within a second).
		found, err := sessions.RevokeEverywhere(r.Context(), req.ID)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if !found {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no session %s", req.ID))
			return
		}
		n := 1
		c.Log.Info("session revoked", "session", req.ID)
		writeJSON(w, http.StatusOK, RevokeResult{Revoked: n})
		return
	}
	// A revoke is a security change: sessions made before it are dead in
	// every process, and any that a racing sign-in opens after the epoch
	// moved belong to the new epoch legitimately.
	if err := c.Store.BumpEpoch(r.Context(), req.User); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Sessions of users known only upstream have no account row:
			// the change logged with their deletion reaches the others.
			n, err := sessions.RevokeUserEverywhere(r.Context(), req.User)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, RevokeResult{Revoked: n})
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	n, err := sessions.RevokeUserEverywhere(r.Context(), req.User)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if _, err := c.Verifier.Refresh(r.Context()); err != nil {
		c.Log.Error("refresh after revoke", "err", err)
	}
	c.Log.Info("sessions revoked", "user", req.User, "count", n)
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: n})
}

func (c *Control) refresh(w http.ResponseWriter, r *http.Request) {
	n, err := c.Verifier.Refresh(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, RevokeResult{Revoked: n})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// ListenControl opens the control socket at path with mode 0600. A socket
// left by a server that died is replaced; one that answers means another
// server runs on this data folder, which is refused.
func ListenControl(path string) (net.Listener, error) {
	if len(path) > 100 {
		return nil, fmt.Errorf("control socket %s: path longer than a unix socket allows (100 bytes); use a shorter --data-dir", path)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another stepgate serve is running on this data folder", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// ErrNotRunning is returned by the client when no server answers on the
// data folder's socket.
var ErrNotRunning = errors.New("stepgate serve is not running on this data folder")

// ErrPermission is returned by the client when the socket is there but
// this user may not connect to it: the server runs, so "not running"
// would send the administrator looking in the wrong place.
var ErrPermission = errors.New("permission denied")

// dialError tells apart a server that is not there (no socket, or one
// that nobody listens on) from one this user may not reach.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (no server answers on %s)", ErrNotRunning, c.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("control socket %s: %w (%s)", c.path, ErrPermission, describeSocket(c.path))
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

// describeSocket names the owner and mode of the socket, or the folder
// that keeps this user from seeing it, so the message says whom to run as.
func describeSocket(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("the data folder %s is closed to this user", filepath.Dir(path))
	}
	owner := "an unknown owner"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = "uid " + strconv.FormatUint(uint64(st.Uid), 10)
		if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
			owner = u.Username
		}
	}
	return fmt.Sprintf("%s is %s's, mode %04o", filepath.Base(path), owner, fi.Mode().Perm())
}

// Client talks to a running server's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://stepgate"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return c.dialError(err)
		}
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("server: %s", e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Sessions lists live sessions, of one user or ("") of all.
func (c *Client) Sessions(ctx context.Context, user string) ([]SessionInfo, error) {
	var out []SessionInfo
	path := "/v1/sessions"
	if user != "" {
		path += "?user=" + url.QueryEscape(user)
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Revoke ends sessions.
func (c *Client) Revoke(ctx context.Context, req RevokeRequest) (int, error) {
	var out RevokeResult
	err := c.do(ctx, http.MethodPost, "/v1/sessions/revoke", req, &out)
	return out.Revoked, err
}

// Check asks the running server to decide a sign-in. The decision carries
// Result, Reason and Message only.
func (c *Client) Check(ctx context.Context, user, secret string) (verifier.Decision, error) {
	var out CheckResult
	if err := c.do(ctx, http.MethodPost, "/v1/check", CheckRequest{User: user, Secret: secret}, &out); err != nil {
		return verifier.Decision{}, err
	}
	return verifier.Decision{Result: out.Result, Reason: out.Reason, Message: out.Message}, nil
}

// Refresh asks the server to notice account changes now rather than at its
// next poll.
func (c *Client) Refresh(ctx context.Context) error {
	var out RevokeResult
	return c.do(ctx, http.MethodPost, "/v1/refresh", struct{}{}, &out)
}
