package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/enroll"
	"github.com/stepgate/stepgate/internal/method"
	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

// codesKeep is how long recovery codes just made stay downloadable and
// printable in the session that made them.
const codesKeep = 10 * time.Minute

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /signin", s.signInForm)
	m.HandleFunc("POST /signin", s.signIn)
	m.HandleFunc("POST /signout", s.auth(s.signOut))
	m.HandleFunc("GET /{$}", s.auth(s.home))
	m.HandleFunc("GET /setup", s.auth(s.setup))
	m.HandleFunc("POST /setup/start", s.auth(s.setupStart))
	m.HandleFunc("GET /setup/qr.png", s.auth(s.setupQR))
	m.HandleFunc("POST /setup/confirm", s.auth(s.setupConfirm))
	m.HandleFunc("GET /setup/done", s.auth(s.setupDone))
	m.HandleFunc("GET /authenticators", s.auth(s.authenticators))
	m.HandleFunc("POST /authenticators/remove", s.auth(s.authenticatorRemove))
	m.HandleFunc("GET /recovery", s.auth(s.recovery))
	m.HandleFunc("POST /recovery/new", s.auth(s.recoveryNew))
	m.HandleFunc("GET /recovery/codes.txt", s.auth(s.recoveryTxt))
	m.HandleFunc("GET /recovery/print", s.auth(s.recoveryPrint))
	m.HandleFunc("GET /devices", s.auth(s.devices))
	m.HandleFunc("POST /devices/revoke", s.auth(s.deviceRevoke))
	m.HandleFunc("POST /devices/revoke-all", s.auth(s.deviceRevokeAll))
	m.HandleFunc("GET /app-passwords", s.auth(s.appPasswords))
	m.HandleFunc("POST /app-passwords/new", s.auth(s.appPasswordNew))
	m.HandleFunc("POST /app-passwords/revoke", s.auth(s.appPasswordRevoke))
	m.HandleFunc("GET /methods", s.auth(s.methods))
	m.HandleFunc("POST /methods/add", s.auth(s.methodAdd))
	m.HandleFunc("POST /methods/confirm", s.auth(s.methodConfirm))
	m.HandleFunc("POST /methods/remove", s.auth(s.methodRemove))
	m.HandleFunc("GET /events", s.auth(s.events))
	s.mux = m
}

// authed is a handler for a signed-in person.
type authed func(w http.ResponseWriter, r *http.Request, p *psession, u *store.User)

// auth finds the session of the request's cookie, checks that the
// account still stands as it did at sign-in, and checks the CSRF token
// of every form posted.
func (s *Server) auth(h authed) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := s.clientOf(r)
		ck, err := r.Cookie(cookieName(c.tls))
		var p *psession
		if err == nil {
			p, _ = s.sess.get(ck.Value)
		}
		if p == nil {
			if r.Method == http.MethodPost {
				http.Error(w, "Your session ended. Sign in again.", http.StatusForbidden)
				return
			}
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get("csrf"), p.csrf) {
				http.Error(w, "This form is out of date or did not come from this page. Go back, reload and try again.", http.StatusForbidden)
				return
			}
		}
		u, err := s.o.Store.User(r.Context(), p.user)
		if err != nil || u.Disabled || u.Epoch != p.epoch {
			// Deleted, disabled, or a security change since sign-in.
			s.sess.drop(p.id)
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		h(w, r, p, u)
	}
}

func (s *Server) base(p *psession, title, nav string) page {
	pg := page{Title: title, Nav: nav, User: p.user, CSRF: p.csrf}
	s.sess.with(p, func(p *psession) { pg.Flash, p.flash = p.flash, "" })
	return pg
}

func (s *Server) flash(p *psession, msg string) { s.sess.with(p, func(p *psession) { p.flash = msg }) }

func (s *Server) redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// --- signing in

type signInData struct {
	Name    string
	Message string
	Digits  int
}

func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	s.renderSignIn(w, r, http.StatusOK, signInData{}, "")
}

func (s *Server) renderSignIn(w http.ResponseWriter, r *http.Request, status int, d signInData, errMsg string) {
	c := s.clientOf(r)
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: tok, Path: "/signin", HttpOnly: true, Secure: c.tls,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	d.Digits = s.o.Verifier.Rule().Digits
	s.render(w, status, "signin", page{Title: "Sign in", CSRF: tok, Error: errMsg, Data: d})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	c := s.clientOf(r)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ck, err := r.Cookie(signInCookie)
	if err != nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		http.Error(w, "This form is out of date or did not come from this page. Go back, reload and try again.", http.StatusForbidden)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	pw := r.PostForm.Get("password")
	code := strings.ReplaceAll(strings.TrimSpace(r.PostForm.Get("code")), " ", "")
	secret := pw
	if code != "" {
		secret = pw + s.o.Verifier.Rule().Separator + code
	}
	if len(name) > 256 || len(secret) > 1024 {
		s.o.Verifier.Refuse(r.Context(), verifier.Attempt{Protocol: Protocol, User: name, Remote: c.addr.String(), TLS: c.tls}, verifier.ReasonTooLong)
		s.renderSignIn(w, r, http.StatusUnauthorized, signInData{Name: name}, genericFailure)
		return
	}
	a := verifier.Attempt{Protocol: Protocol, User: name, Secret: secret, Remote: c.addr.String(), TLS: c.tls, SetUp: true}
	if s.o.Password != nil {
		defer s.o.Password(r.Context(), &a, c.addr)()
	}
	d := s.o.Verifier.Verify(r.Context(), a)
	if !d.Allowed() {
		msg := genericFailure
		switch {
		case d.Reason == verifier.ReasonLocked || d.Reason == verifier.ReasonCodeSent:
			msg = d.Message
		case d.Unavailable() || d.Busy():
			msg = "stepgate could not check the password just now. Try again in a minute."
		}
		s.renderSignIn(w, r, http.StatusUnauthorized, signInData{Name: name}, msg)
		return
	}
	u, err := s.o.Store.User(r.Context(), d.User)
	if errors.Is(err, store.ErrNotFound) && d.Reason == verifier.ReasonSetUp {
		// Known upstream only: the row is made now, bound to the entry.
		u, err = s.o.Accounts.Row(r.Context(), d.User)
	}
	if err != nil {
		s.o.Log.Error("portal: reading the account after sign-in", "user", d.User, "err", err)
		s.renderSignIn(w, r, http.StatusServiceUnavailable, signInData{Name: name}, "Something went wrong. Try again in a minute.")
		return
	}
	p := s.sess.create(u.Name, u.Epoch, d, c.addr.String())
	http.SetCookie(w, &http.Cookie{Name: cookieName(c.tls), Value: p.id, Path: "/", HttpOnly: true, Secure: c.tls,
		SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Path: "/signin", MaxAge: -1, HttpOnly: true, Secure: c.tls,
		SameSite: http.SameSiteStrictMode})
	if u.TwoStep != store.TwoStepActive {
		s.redirect(w, r, "/setup")
		return
	}
	s.redirect(w, r, "/")
}

const genericFailure = "The name, password or code is not right. Codes change every 30 seconds: use the newest."

func (s *Server) signOut(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	s.sess.drop(p.id)
	c := s.clientOf(r)
	http.SetCookie(w, &http.Cookie{Name: cookieName(c.tls), Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.tls,
		SameSite: http.SameSiteStrictMode})
	s.redirect(w, r, "/signin")
}

// --- home

type homeData struct {
	DisplayName    string
	TwoStep        bool
	Authenticators int
	RecoveryLeft   int
	Devices        int
	AppPasswords   int
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	ctx := r.Context()
	d := homeData{DisplayName: displayName(u), TwoStep: u.TwoStep == store.TwoStepActive}
	if auths, err := s.o.Store.Authenticators(ctx, u.ID, true); err == nil {
		d.Authenticators = len(auths)
	}
	d.RecoveryLeft, _ = s.o.Accounts.RecoveryCodesLeft(ctx, u.Name)
	if devs, err := s.deviceList(ctx, p, u); err == nil {
		d.Devices = len(devs)
	}
	if aps, err := s.o.Store.AppPasswords(ctx, u.ID); err == nil {
		d.AppPasswords = len(aps)
	}
	s.render(w, http.StatusOK, "home", s.pageWith(p, "Your account", "home", d))
}

func (s *Server) pageWith(p *psession, title, nav string, data any) page {
	pg := s.base(p, title, nav)
	pg.Data = data
	return pg
}

func displayName(u *store.User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.Name
}

// --- two-step set-up

type setupData struct {
	Active  bool
	Pending bool
	Label   string
	Key     string // in groups of four
	URI     string
	Digits  int
	Error   string
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	s.renderSetup(w, http.StatusOK, p, u, "")
}

func (s *Server) renderSetup(w http.ResponseWriter, status int, p *psession, u *store.User, errMsg string) {
	d := setupData{Active: u.TwoStep == store.TwoStepActive, Digits: s.o.Verifier.Rule().Digits}
	s.sess.with(p, func(p *psession) {
		if e := p.enrolling; e != nil {
			d.Pending, d.Label, d.Key, d.URI = true, e.Label, e.GroupedSecret(), e.URI
		}
	})
	pg := s.pageWith(p, "Set up two-step verification", "setup", d)
	pg.Error = errMsg
	s.render(w, status, "setup", pg)
}

func (s *Server) setupStart(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	label := strings.TrimSpace(r.PostForm.Get("label"))
	if len(label) > 64 {
		label = label[:64]
	}
	e, err := s.o.Accounts.Enroll(r.Context(), u.Name, label)
	if err != nil {
		s.o.Log.Error("portal: enrolling", "user", u.Name, "err", err)
		s.renderSetup(w, http.StatusInternalServerError, p, u, "The authenticator could not be started. Try again.")
		return
	}
	s.sess.with(p, func(p *psession) { p.enrolling = e })
	s.changed(r, p, "authenticator_started", "label", e.Label)
	s.redirect(w, r, "/setup")
}

func (s *Server) setupQR(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	var e *enroll.Enrollment
	s.sess.with(p, func(p *psession) { e = p.enrolling })
	if e == nil {
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	if err := e.WritePNGTo(&buf, 264); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(buf.Bytes())
}

func (s *Server) setupConfirm(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	code := strings.ReplaceAll(strings.TrimSpace(r.PostForm.Get("code")), " ", "")
	res, err := s.o.Accounts.ConfirmAuthenticator(r.Context(), u.Name, code)
	if errors.Is(err, enroll.ErrBadCode) {
		s.renderSetup(w, http.StatusUnprocessableEntity, p, u, "That code does not match. Type the newest code the app shows (check the phone's clock).")
		return
	}
	if err != nil {
		s.o.Log.Error("portal: confirming an authenticator", "user", u.Name, "err", err)
		s.renderSetup(w, http.StatusInternalServerError, p, u, "The code could not be checked. Try again.")
		return
	}
	s.changed(r, p, "authenticator_confirmed", "label", res.Label)
	first := u.TwoStep != store.TwoStepActive
	s.sess.with(p, func(p *psession) { p.enrolling = nil })
	if left, err := s.o.Accounts.RecoveryCodesLeft(r.Context(), u.Name); err == nil && left == 0 && first {
		// The first authenticator: recovery codes for the day the phone
		// is lost, shown on the next page.
		if codes, err := s.o.Accounts.RecoveryCodes(r.Context(), u.Name); err == nil {
			s.keepCodes(p, codes)
			s.changed(r, p, "recovery_codes_made", "count", len(codes))
		}
	}
	s.redirect(w, r, "/setup/done")
}

func (s *Server) keepCodes(p *psession, codes []string) {
	now := s.o.Now()
	s.sess.with(p, func(p *psession) { p.codes, p.codesAt = codes, now })
}

// freshCodes are the recovery codes this session made, while they may
// still be shown.
func (s *Server) freshCodes(p *psession) []string {
	var codes []string
	now := s.o.Now()
	s.sess.with(p, func(p *psession) {
		if p.codes != nil && now.Sub(p.codesAt) < codesKeep {
			codes = p.codes
		} else {
			p.codes = nil
		}
	})
	return codes
}

type howTo struct {
	Name, Separator        string
	Example                string // ExamplePassword, Separator, ExampleCode
	ExamplePassword        string
	ExampleCode            string
	Digits                 int
	LDAP, IMAP, POP3, SMTP string
	BindDN                 string
}

func (s *Server) howTo(u *store.User) howTo {
	rule := s.o.Verifier.Rule()
	h := howTo{Name: u.Name, Separator: rule.Separator, Digits: rule.Digits, LDAP: s.cfg.Servers.LDAP,
		IMAP: s.cfg.Servers.IMAP, POP3: s.cfg.Servers.POP3, SMTP: s.cfg.Servers.SMTP}
	if h.LDAP != "" {
		h.BindDN = "uid=" + u.Name + ",ou=people," + s.cfg.Servers.BaseDN
	}
	// An example password made from the person's name, so that the rule
	// is seen on something familiar: never their real password.
	first := strings.ToLower(strings.Fields(displayName(u) + " x")[0])
	h.ExamplePassword = first + "-garden-7"
	h.ExampleCode = ("49201735")[:rule.Digits]
	h.Example = h.ExamplePassword + rule.Separator + h.ExampleCode
	return h
}

type doneData struct {
	Codes []string
	HowTo howTo
}

func (s *Server) setupDone(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	if u.TwoStep != store.TwoStepActive {
		s.redirect(w, r, "/setup")
		return
	}
	s.render(w, http.StatusOK, "done", s.pageWith(p, "Two-step verification is on", "setup", doneData{Codes: s.freshCodes(p), HowTo: s.howTo(u)}))
}

// --- authenticators

type authData struct {
	List   []store.Authenticator
	Digits int
}

func (s *Server) authenticators(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	s.renderAuthenticators(w, r, http.StatusOK, p, u, "")
}

func (s *Server) renderAuthenticators(w http.ResponseWriter, r *http.Request, status int, p *psession, u *store.User, errMsg string) {
	list, err := s.o.Store.Authenticators(r.Context(), u.ID, false)
	if err != nil {
		s.o.Log.Error("portal: authenticators", "user", u.Name, "err", err)
	}
	for i := range list {
		list[i].Secret = "" // never near a template
	}
	pg := s.pageWith(p, "Authenticator apps", "authenticators", authData{List: list, Digits: s.o.Verifier.Rule().Digits})
	pg.Error = errMsg
	s.render(w, status, "authenticators", pg)
}

func (s *Server) authenticatorRemove(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	id, _ := strconv.ParseInt(r.PostForm.Get("id"), 10, 64)
	code := strings.ReplaceAll(strings.TrimSpace(r.PostForm.Get("code")), " ", "")
	err := s.o.Accounts.RemoveAuthenticator(r.Context(), u.Name, id, code)
	switch {
	case err == nil:
		s.changed(r, p, "authenticator_removed", "id", id)
		s.flash(p, "The authenticator was removed.")
		s.redirect(w, r, "/authenticators")
	case errors.Is(err, account.ErrBadCode):
		s.renderAuthenticators(w, r, http.StatusUnprocessableEntity, p, u, "That code does not match. Type the newest code from one of your authenticator apps.")
	case errors.Is(err, account.ErrLastAuthenticator):
		s.renderAuthenticators(w, r, http.StatusConflict, p, u, "This is your only second factor: add another authenticator first.")
	case errors.Is(err, store.ErrNotFound):
		s.renderAuthenticators(w, r, http.StatusNotFound, p, u, "That authenticator is gone already.")
	default:
		s.o.Log.Error("portal: removing an authenticator", "user", u.Name, "err", err)
		s.renderAuthenticators(w, r, http.StatusInternalServerError, p, u, "The authenticator could not be removed. Try again.")
	}
}

// --- recovery codes

type recoveryData struct {
	Left  int
	Codes []string
	Name  string
}

func (s *Server) recovery(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	left, _ := s.o.Accounts.RecoveryCodesLeft(r.Context(), u.Name)
	s.render(w, http.StatusOK, "recovery", s.pageWith(p, "Recovery codes", "recovery", recoveryData{Left: left, Codes: s.freshCodes(p)}))
}

func (s *Server) recoveryNew(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	codes, err := s.o.Accounts.RecoveryCodes(r.Context(), u.Name)
	if err != nil {
		s.o.Log.Error("portal: recovery codes", "user", u.Name, "err", err)
		pg := s.pageWith(p, "Recovery codes", "recovery", recoveryData{})
		pg.Error = "New codes could not be made. Try again."
		s.render(w, http.StatusInternalServerError, "recovery", pg)
		return
	}
	s.keepCodes(p, codes)
	s.changed(r, p, "recovery_codes_made", "count", len(codes))
	s.redirect(w, r, "/recovery")
}

func (s *Server) recoveryTxt(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	codes := s.freshCodes(p)
	if codes == nil {
		http.Error(w, "These codes can no longer be shown: make new ones.", http.StatusGone)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Recovery codes for %s (stepgate)\r\nEach works once, in place of a code from your app.\r\n\r\n", u.Name)
	for _, c := range codes {
		b.WriteString(c + "\r\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="stepgate-recovery-codes.txt"`)
	w.Write([]byte(b.String()))
}

func (s *Server) recoveryPrint(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	codes := s.freshCodes(p)
	if codes == nil {
		http.Error(w, "These codes can no longer be shown: make new ones.", http.StatusGone)
		return
	}
	s.render(w, http.StatusOK, "print", s.pageWith(p, "Recovery codes", "recovery", recoveryData{Codes: codes, Name: u.Name}))
}

// --- devices

type device struct {
	ID, Protocol, Remote, App string
	Created, LastUsed         time.Time
	This                      bool
}

func (s *Server) deviceList(ctx context.Context, p *psession, u *store.User) ([]device, error) {
	recs, err := s.o.Store.Sessions(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	apps, _ := s.o.Store.AppPasswords(ctx, u.ID)
	names := map[string]string{}
	for _, a := range apps {
		for _, proto := range a.Protocols {
			k := s.o.Verifier.AppSessionKey(u.Name, a.Hash, proto)
			names[string(k[:])] = a.Name
		}
	}
	var out []device
	for _, rec := range recs {
		if rec.Epoch != u.Epoch || !s.o.Verifier.Sessions().LiveRecord(&rec) {
			continue
		}
		d := device{ID: rec.ID, Protocol: strings.ToUpper(rec.Protocol), Remote: rec.Remote, Created: rec.Created,
			LastUsed: rec.LastUsed, This: rec.ID == p.verID}
		if n, ok := names[string(rec.Key)]; ok {
			d.App = "app password “" + n + "”"
		}
		if sess, ok := s.o.Verifier.Sessions().Get(rec.ID); ok && sess.LastUsed().After(d.LastUsed) {
			d.LastUsed = sess.LastUsed() // this instance's newer word
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	list, err := s.deviceList(r.Context(), p, u)
	pg := s.pageWith(p, "Devices signed in", "devices", list)
	if err != nil {
		s.o.Log.Error("portal: devices", "user", u.Name, "err", err)
		pg.Error = "The list could not be read. Try again."
	}
	s.render(w, http.StatusOK, "devices", pg)
}

func (s *Server) deviceRevoke(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	id := r.PostForm.Get("id")
	recs, err := s.o.Store.Sessions(r.Context(), u.Name)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	mine := false
	for _, rec := range recs {
		mine = mine || rec.ID == id
	}
	if !mine {
		// Someone else's, or gone: nothing said about which.
		s.flash(p, "That device is signed out already.")
		s.redirect(w, r, "/devices")
		return
	}
	if _, err := s.o.Verifier.Sessions().RevokeEverywhere(r.Context(), id); err != nil {
		s.o.Log.Error("portal: revoking a session", "user", u.Name, "err", err)
		http.Error(w, "The device could not be signed out. Try again.", http.StatusInternalServerError)
		return
	}
	s.changed(r, p, "session_revoked", "session", id)
	if id == p.verID {
		s.redirect(w, r, "/signin")
		return
	}
	s.flash(p, "The device is signed out. It must sign in again with a new code.")
	s.redirect(w, r, "/devices")
}

func (s *Server) deviceRevokeAll(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	n, err := s.o.Verifier.Sessions().RevokeUserEverywhere(r.Context(), u.Name)
	if err != nil {
		s.o.Log.Error("portal: revoking sessions", "user", u.Name, "err", err)
		http.Error(w, "The devices could not be signed out. Try again.", http.StatusInternalServerError)
		return
	}
	s.changed(r, p, "sessions_revoked", "count", n)
	s.sess.drop(p.id) // everywhere includes here
	s.redirect(w, r, "/signin")
}

// --- app passwords

type appPassword struct {
	ID        int64
	Name      string
	Protocols []string
	Created   time.Time
	LastUsed  time.Time
}

type appData struct {
	List      []appPassword
	New       *account.NewAppPassword
	Protocols []string
}

func (s *Server) appPasswordList(ctx context.Context, u *store.User) ([]appPassword, error) {
	aps, err := s.o.Store.AppPasswords(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	recs, _ := s.o.Store.Sessions(ctx, u.Name)
	var out []appPassword
	for _, a := range aps {
		x := appPassword{ID: a.ID, Name: a.Name, Protocols: a.Protocols, Created: a.Created}
		for _, proto := range a.Protocols {
			k := s.o.Verifier.AppSessionKey(u.Name, a.Hash, proto)
			for _, rec := range recs {
				if string(rec.Key) == string(k[:]) && rec.LastUsed.After(x.LastUsed) {
					x.LastUsed = rec.LastUsed
				}
			}
		}
		out = append(out, x)
	}
	return out, nil
}

func (s *Server) renderApps(w http.ResponseWriter, r *http.Request, status int, p *psession, u *store.User, made *account.NewAppPassword, errMsg string) {
	list, err := s.appPasswordList(r.Context(), u)
	if err != nil {
		s.o.Log.Error("portal: app passwords", "user", u.Name, "err", err)
	}
	pg := s.pageWith(p, "App passwords", "apps", appData{List: list, New: made, Protocols: s.o.AppProtocols})
	pg.Error = errMsg
	s.render(w, status, "apps", pg)
}

func (s *Server) appPasswords(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	s.renderApps(w, r, http.StatusOK, p, u, nil, "")
}

func (s *Server) appPasswordNew(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	protos := r.PostForm["protocol"]
	for _, proto := range protos {
		if !slices.Contains(s.o.AppProtocols, proto) {
			s.renderApps(w, r, http.StatusUnprocessableEntity, p, u, nil, "App passwords cannot sign in to "+protocolName(proto)+" here.")
			return
		}
	}
	made, err := s.o.Accounts.CreateAppPassword(r.Context(), u.Name, r.PostForm.Get("name"), protos)
	var inv *account.InvalidError
	switch {
	case errors.As(err, &inv):
		s.renderApps(w, r, http.StatusUnprocessableEntity, p, u, nil, inv.Error()+".")
		return
	case err != nil:
		s.o.Log.Error("portal: making an app password", "user", u.Name, "err", err)
		s.renderApps(w, r, http.StatusInternalServerError, p, u, nil, "The app password could not be made. Try again.")
		return
	}
	s.changed(r, p, "app_password_made", "app_password", made.ID, "protocols", strings.Join(made.Protocols, ","))
	// Shown in this answer only: not kept, not in a URL.
	s.renderApps(w, r, http.StatusOK, p, u, made, "")
}

func (s *Server) appPasswordRevoke(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	id, _ := strconv.ParseInt(r.PostForm.Get("id"), 10, 64)
	a, err := s.o.Accounts.RevokeAppPassword(r.Context(), s.o.Verifier, u.Name, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.flash(p, "That app password is gone already.")
	case err != nil:
		s.o.Log.Error("portal: revoking an app password", "user", u.Name, "err", err)
		s.renderApps(w, r, http.StatusInternalServerError, p, u, nil, "The app password could not be revoked. Try again.")
		return
	default:
		s.changed(r, p, "app_password_revoked", "app_password", a.ID)
		s.flash(p, "The app password “"+a.Name+"” no longer works, and the devices it signed in are signed out.")
	}
	s.redirect(w, r, "/app-passwords")
}

// --- e-mail and phone

type methodsData struct {
	List    []account.MethodSummary
	Pending bool
	Off     bool
}

func (s *Server) renderMethods(w http.ResponseWriter, r *http.Request, status int, p *psession, u *store.User, errMsg string) {
	list, err := s.o.Accounts.Methods(r.Context(), u.Name)
	d := methodsData{List: list}
	if err != nil {
		s.o.Log.Warn("portal: methods", "user", u.Name, "err", err)
		d.Off = true
	}
	for _, m := range list {
		d.Pending = d.Pending || !m.Verified
	}
	pg := s.pageWith(p, "E-mail and phone", "methods", d)
	pg.Error = errMsg
	s.render(w, status, "methods", pg)
}

func (s *Server) methods(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	s.renderMethods(w, r, http.StatusOK, p, u, "")
}

func (s *Server) methodAdd(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	kind := store.MethodKind(r.PostForm.Get("kind"))
	if kind != store.MethodEmail && kind != store.MethodSMS {
		s.renderMethods(w, r, http.StatusUnprocessableEntity, p, u, "Choose e-mail or phone.")
		return
	}
	m, err := s.o.Accounts.AddMethod(r.Context(), u.Name, kind, strings.TrimSpace(r.PostForm.Get("address")))
	var inv *account.InvalidError
	switch {
	case errors.As(err, &inv):
		s.renderMethods(w, r, http.StatusUnprocessableEntity, p, u, "That address is not valid: "+inv.Error()+".")
		return
	case err != nil:
		s.o.Log.Warn("portal: adding a method", "user", u.Name, "err", err)
		s.renderMethods(w, r, http.StatusUnprocessableEntity, p, u, "A code could not be sent there. "+plain(err))
		return
	}
	s.changed(r, p, "method_added", "method", m.ID, "kind", string(m.Kind))
	s.flash(p, "A code is on its way. Type it below to confirm.")
	s.redirect(w, r, "/methods")
}

func (s *Server) methodConfirm(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	c, err := s.o.Accounts.ConfirmMethod(r.Context(), u.Name, strings.TrimSpace(r.PostForm.Get("code")))
	if err != nil {
		msg := "That code does not match. Type the newest code sent to you."
		if !errors.Is(err, method.ErrBadCode) {
			s.o.Log.Warn("portal: confirming a method", "user", u.Name, "err", err)
		}
		s.renderMethods(w, r, http.StatusUnprocessableEntity, p, u, msg)
		return
	}
	s.changed(r, p, "method_confirmed", "method", c.Method.ID)
	s.flash(p, "Confirmed.")
	s.redirect(w, r, "/methods")
}

func (s *Server) methodRemove(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	id, _ := strconv.ParseInt(r.PostForm.Get("id"), 10, 64)
	err := s.o.Accounts.RemoveMethod(r.Context(), u.Name, id)
	switch {
	case errors.Is(err, method.ErrLastFactor):
		s.renderMethods(w, r, http.StatusConflict, p, u, "This is your only second factor: add another first.")
		return
	case err != nil:
		s.o.Log.Warn("portal: removing a method", "user", u.Name, "err", err)
		s.renderMethods(w, r, http.StatusUnprocessableEntity, p, u, "It could not be removed. Try again.")
		return
	}
	s.changed(r, p, "method_removed", "method", id)
	s.flash(p, "Removed.")
	s.redirect(w, r, "/methods")
}

// plain is an error's text cut to one sentence's length for a page.
func plain(err error) string {
	t := err.Error()
	if len(t) > 160 {
		t = t[:160] + "…"
	}
	return t
}

// --- security events

type event struct {
	At               time.Time
	What, Where, How string
	Bad              bool
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, p *psession, u *store.User) {
	es, err := s.o.Store.UserEvents(r.Context(), u.Name, 50)
	pg := s.pageWith(p, "Security events", "events", nil)
	if err != nil {
		s.o.Log.Error("portal: events", "user", u.Name, "err", err)
		pg.Error = "The events could not be read. Try again."
	}
	var out []event
	for _, e := range es {
		out = append(out, inWords(e))
	}
	pg.Data = out
	s.render(w, http.StatusOK, "events", pg)
}
