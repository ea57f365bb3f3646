// Package audit keeps logs readable and bounded whatever clients send: a
// slog.Handler wrapper that cuts and escapes client-chosen strings, and
// summarises floods of identical refusals. A bind name of 1 MB sent
// thousands of times from one locked-out connection must cost a few lines,
// not hundreds of megabytes, and a name holding "\n" must not forge a line.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of Options.
const (
	DefaultMaxValue   = 256
	DefaultInterval   = 10 * time.Second
	DefaultMaxSources = 10000
)

// Options tune a Handler; zero values take the defaults.
type Options struct {
	// MaxValue is the longest string value kept whole, in bytes.
	MaxValue int
	// Interval is how often suppressed events are summarised. A negative
	// interval starts no ticker: summaries are written by Flush and Close.
	Interval time.Duration
	// MaxSources bounds the refusals tracked at once; past it, refusals
	// are only counted by reason.
	MaxSources int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler wraps another slog.Handler. Handlers made from it by WithAttrs
// and WithGroup share its summaries.
type Handler struct {
	inner slog.Handler
	st    *state
	// pre are the attributes added by WithAttrs outside any group: a
	// logger made with .With("remote", ...) keys its refusals on them.
	pre     []slog.Attr
	grouped bool
}

// key identifies a run of identical refusals.
type key struct {
	msg, remote, reason, user string
	overflow                  bool // past MaxSources: by reason only
}

type entry struct {
	inner      slog.Handler
	level      slog.Level
	suppressed int
	hasUser    bool
}

type state struct {
	opts   Options
	mu     sync.Mutex
	seen   map[key]*entry
	since  time.Time
	closed bool
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewHandler wraps inner. Close it to write the last summaries.
func NewHandler(inner slog.Handler, o Options) *Handler {
	if o.MaxValue <= 0 {
		o.MaxValue = DefaultMaxValue
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	st := &state{opts: o, seen: map[key]*entry{}, since: o.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if o.Interval > 0 {
		go st.run(o.Interval)
	} else {
		close(st.done)
	}
	return &Handler{inner: inner, st: st}
}

func (s *state) run(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flush(context.Background())
		case <-s.stop:
			return
		}
	}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = h.st.cleanAttr(a)
	}
	n := &Handler{inner: h.inner.WithAttrs(clean), st: h.st, grouped: h.grouped}
	if !h.grouped {
		n.pre = append(append([]slog.Attr(nil), h.pre...), clean...)
	} else {
		n.pre = h.pre
	}
	return n
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{inner: h.inner.WithGroup(name), st: h.st, pre: h.pre, grouped: true}
}

// Handle implements slog.Handler: it writes r cut and escaped, unless r
// repeats a refusal already written in this interval.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.st.clean(r.Message), r.PC)
	var result, remote, reason, user string
	var hasUser bool
	pick := func(a slog.Attr) {
		if a.Value.Kind() != slog.KindString {
			return
		}
		switch a.Key {
		case "result":
			result = a.Value.String()
		case "remote":
			remote = a.Value.String()
		case "reason":
			reason = a.Value.String()
		case "user":
			user, hasUser = a.Value.String(), true
		}
	}
	for _, a := range h.pre {
		pick(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		a = h.st.cleanAttr(a)
		if !h.grouped {
			pick(a)
		}
		out.AddAttrs(a)
		return true
	})
	if result == "deny" && h.st.suppress(h, r.Level, out.Message, remote, reason, user, hasUser) {
		return nil
	}
	return h.inner.Handle(ctx, out)
}

// suppress records a refusal and reports whether it repeats one already
// written in this interval (and so is only counted).
func (s *state) suppress(h *Handler, level slog.Level, msg, remote, reason, user string, hasUser bool) bool {
	// A locked-out source is one source whatever names it tries.
	if reason == "locked_out" {
		user, hasUser = "", false
	}
	k := key{msg: msg, remote: remote, reason: reason, user: user}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if e, ok := s.seen[k]; ok {
		e.suppressed++
		return true
	}
	if len(s.seen) >= s.opts.MaxSources {
		// Memory stays bounded under a flood from many sources: the
		// rest are counted per reason, and none is written alone.
		k = key{msg: msg, reason: reason, overflow: true}
		e, ok := s.seen[k]
		if !ok {
			k = key{msg: strings.Clone(msg), reason: strings.Clone(reason), overflow: true}
			e = &entry{inner: h.inner, level: level}
			s.seen[k] = e
		}
		e.suppressed++
		return true
	}
	// A short name may share the memory of a long request (NAME@ and a
	// megabyte of domain): keep copies, not the request.
	k = key{msg: strings.Clone(msg), remote: strings.Clone(remote), reason: strings.Clone(reason), user: strings.Clone(user)}
	s.seen[k] = &entry{inner: h.inner, level: level, hasUser: hasUser}
	return false
}

// Flush writes one summary line for every run of refusals that had
// repeats since the last flush.
func (h *Handler) Flush(ctx context.Context) { h.st.flush(ctx) }

func (s *state) flush(ctx context.Context) {
	type summary struct {
		k key
		e entry
	}
	s.mu.Lock()
	now := s.opts.Now()
	span := now.Sub(s.since)
	s.since = now
	var out []summary
	for k, e := range s.seen {
		if e.suppressed == 0 || k.overflow {
			// A run with no repeats in a whole interval is over; the
			// overflow buckets are counted afresh each interval.
			delete(s.seen, k)
		}
		if e.suppressed > 0 {
			out = append(out, summary{k, *e})
			e.suppressed = 0
		}
	}
	s.mu.Unlock()
	span = roundSpan(span)
	for _, m := range out {
		from := m.k.remote
		if m.k.overflow {
			from = "sources past the " + strconv.Itoa(s.opts.MaxSources) + " tracked"
		}
		// Its parts were cleaned when the refusal was handled.
		r := slog.NewRecord(now, m.e.level,
			fmt.Sprintf("audit: suppressed %d %s events from %s in %s", m.e.suppressed, m.k.reason, from, span), 0)
		attrs := []slog.Attr{slog.String("summary", m.k.msg), slog.String("reason", m.k.reason)}
		if !m.k.overflow {
			attrs = append(attrs, slog.String("remote", m.k.remote))
		}
		if m.e.hasUser {
			attrs = append(attrs, slog.String("user", m.k.user))
		}
		attrs = append(attrs, slog.Int("suppressed", m.e.suppressed), slog.String("interval", span.String()))
		r.AddAttrs(attrs...)
		m.e.inner.Handle(ctx, r)
	}
}

func roundSpan(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// Close stops the ticker and writes the last summaries. Records handled
// after Close are written, none suppressed.
func (h *Handler) Close() error {
	h.st.once.Do(func() {
		close(h.st.stop)
		<-h.st.done
		h.st.flush(context.Background())
		h.st.mu.Lock()
		h.st.closed = true
		h.st.mu.Unlock()
	})
	return nil
}

// cleanAttr cuts and escapes the strings in a, groups included. Errors
// and Stringers are turned into their text first: an error message may
// well quote what a client sent.
func (s *state) cleanAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, s.clean(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		for i, ga := range g {
			clean[i] = s.cleanAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, s.clean(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, s.clean(x.String()))
		case []byte:
			return slog.String(a.Key, s.clean(string(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (s *state) clean(v string) string { return Clean(v, s.opts.MaxValue) }

// Clean returns v cut to at most max bytes at a character boundary,
// marked when cut, with control characters, invalid UTF-8 and the
// backslash escaped, so that a value can neither break a line nor pass
// for an escape of its own.
func Clean(v string, max int) string {
	if len(v) <= max && plain(v) {
		return v
	}
	n := len(v)
	if n > max {
		n = max
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
	}
	b := make([]byte, 0, n+32)
	for i := 0; i < n; {
		r, size := utf8.DecodeRuneInString(v[i:n])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\x`...)
			b = appendHex(b, v[i])
		case r == '\\':
			b = append(b, `\\`...)
		case r < 0x20 || r == 0x7f:
			b = append(b, `\x`...)
			b = appendHex(b, byte(r))
		case (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029:
			// C1 controls and the Unicode line separators break lines
			// in some viewers.
			b = append(b, `\u`...)
			b = append(b, fmt.Sprintf("%04x", r)...)
		default:
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	if n < len(v) {
		b = append(b, "…[cut, "...)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, " bytes]"...)
	}
	return string(b)
}

// plain: printable ASCII without the backslash, which needs no escape.
func plain(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func appendHex(b []byte, c byte) []byte {
	const digits = "0123456789abcdef"
	return append(b, digits[c>>4], digits[c&0xf])
}
