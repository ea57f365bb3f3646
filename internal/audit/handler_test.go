package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepgate/stepgate/internal/testenv"
)

// newLogger returns a JSON logger through a Handler (no ticker unless
// interval > 0) and the buffer it writes to.
func newLogger(t *testing.T, o Options) (*slog.Logger, *Handler, *testenv.Buffer) {
	t.Helper()
	buf := &testenv.Buffer{}
	if o.Interval == 0 {
		o.Interval = -1
	}
	h := NewHandler(slog.NewJSONHandler(buf, nil), o)
	t.Cleanup(func() { h.Close() })
	return slog.New(h), h, buf
}

// lines decodes every line of a JSON log; a line that is not one JSON
// object fails the test (a forged line would be one).
func lines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		m := map[string]any{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not one JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func deny(l *slog.Logger, remote, reason, user string) {
	l.Info("decision", "protocol", "ldap", "user", user, "remote", remote, "tls", false, "result", "deny", "reason", reason)
}

func TestCutsLongValues(t *testing.T) {
	l, _, buf := newLogger(t, Options{})
	l.Info("decision", "user", strings.Repeat("a", 1<<20), "err", errors.New(strings.Repeat("b", 5000)), "short", "bob")
	if len(buf.String()) > 1024 {
		t.Fatalf("a 1 MB name made a %d-byte line", len(buf.String()))
	}
	ls := lines(t, buf.String())
	if got, want := ls[0]["user"], strings.Repeat("a", 256)+"…[cut, 1048576 bytes]"; got != want {
		t.Errorf("user = %q, want %q", got, want)
	}
	if got := ls[0]["err"].(string); !strings.HasSuffix(got, "…[cut, 5000 bytes]") || len(got) > 300 {
		t.Errorf("a long error is not cut: %q", got)
	}
	if ls[0]["short"] != "bob" {
		t.Errorf("a short value changed: %q", ls[0]["short"])
	}
	// A cut never splits a character.
	s := Clean(strings.Repeat("é", 200), 255)
	if !utf8.ValidString(s) || !strings.HasPrefix(s, strings.Repeat("é", 127)+"…[cut, 400 bytes]") {
		t.Errorf("cut inside a character: %q", s)
	}
}

func TestEscapesControlsAndBadUTF8(t *testing.T) {
	l, _, buf := newLogger(t, Options{})
	forged := "alice\r\n{\"msg\":\"decision\",\"result\":\"allow\"}\n\xff\xfe\u2028x\\x0a"
	l.Info("decision", "user", forged, slog.Group("g", "name", "a\nb"))
	l.With("remote", "1.2.3.4\n").Info("line\nbreak")
	ls := lines(t, buf.String())
	if len(ls) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(ls), buf.String())
	}
	want := `alice\x0d\x0a{"msg":"decision","result":"allow"}\x0a\xff\xfe\u2028x\\x0a`
	if ls[0]["user"] != want {
		t.Errorf("user = %q, want %q", ls[0]["user"], want)
	}
	if g := ls[0]["g"].(map[string]any); g["name"] != `a\x0ab` {
		t.Errorf("grouped value = %q", g["name"])
	}
	if ls[1]["msg"] != `line\x0abreak` || ls[1]["remote"] != `1.2.3.4\x0a` {
		t.Errorf("message or With value not escaped: %v", ls[1])
	}
	// The text handler (operational logs) keeps one line per record too.
	tb := &testenv.Buffer{}
	slog.New(NewHandler(slog.NewTextHandler(tb, nil), Options{Interval: -1})).Info("m", "user", forged)
	if n := strings.Count(tb.String(), "\n"); n != 1 {
		t.Errorf("text handler wrote %d lines: %q", n, tb.String())
	}
}

func TestSummarisesRepeatedRefusals(t *testing.T) {
	l, h, buf := newLogger(t, Options{})
	for range 1000 {
		deny(l, "127.0.0.1", "locked_out", strings.Repeat("x", 1<<16)+fmt.Sprint(time.Now().UnixNano()))
	}
	for range 3 {
		deny(l, "127.0.0.1", "bad_password", "alice")
		deny(l, "127.0.0.1", "bad_password", "bob")
		l.Info("decision", "user", "carol", "remote", "127.0.0.1", "result", "allow", "reason", "session")
	}
	h.Flush(context.Background())
	ls := lines(t, buf.String())
	count := map[string]int{}
	for _, m := range ls {
		switch {
		case m["msg"] == "decision":
			count[fmt.Sprint(m["reason"], "/", m["result"])]++
		case m["suppressed"] != nil:
			count[fmt.Sprint("summary ", m["reason"], "/", m["user"])] += int(m["suppressed"].(float64))
		}
	}
	want := map[string]int{
		"locked_out/deny": 1, "summary locked_out/<nil>": 999,
		"bad_password/deny": 2, "summary bad_password/alice": 2, "summary bad_password/bob": 2,
		"session/allow": 3,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("events and summaries: %v, want %v", count, want)
	}
	if !strings.Contains(buf.String(), `"msg":"audit: suppressed 999 locked_out events from 127.0.0.1 in `) {
		t.Errorf("no summary line for the locked-out source:\n%s", buf.String())
	}
	if len(buf.String()) > 8<<10 {
		t.Errorf("1,000 locked-out refusals made %d bytes of log", len(buf.String()))
	}

	// The next interval: a run still going is summarised again, without
	// writing its event again; a run that stopped is forgotten.
	buf2 := len(buf.String())
	deny(l, "127.0.0.1", "locked_out", "y")
	deny(l, "127.0.0.1", "bad_password", "alice")
	h.Flush(context.Background())
	h.Flush(context.Background())
	deny(l, "127.0.0.1", "locked_out", "z")
	rest := lines(t, buf.String()[buf2:])
	if len(rest) != 3 || rest[0]["suppressed"] == nil && rest[1]["suppressed"] == nil || rest[2]["msg"] != "decision" {
		t.Errorf("second interval: %v", rest)
	}
}

func TestBoundedSources(t *testing.T) {
	l, h, buf := newLogger(t, Options{MaxSources: 10})
	for i := range 5000 {
		deny(l, fmt.Sprintf("10.0.%d.%d", i/256, i%256), "bad_password", "alice")
	}
	h.st.mu.Lock()
	tracked := len(h.st.seen)
	h.st.mu.Unlock()
	if tracked > 11 {
		t.Errorf("%d runs tracked, want at most 10 sources and 1 overflow bucket", tracked)
	}
	h.Close()
	ls := lines(t, buf.String())
	if len(ls) != 11 {
		t.Fatalf("%d lines, want 10 events and one summary", len(ls))
	}
	last := ls[10]
	if last["suppressed"] != float64(4990) || last["remote"] != nil ||
		!strings.HasPrefix(last["msg"].(string), "audit: suppressed 4990 bad_password events from sources past the 10 tracked in ") {
		t.Errorf("overflow summary: %v", last)
	}
	// After Close nothing is held back.
	deny(l, "10.0.0.1", "bad_password", "alice")
	deny(l, "10.0.0.1", "bad_password", "alice")
	if n := len(lines(t, buf.String())); n != 13 {
		t.Errorf("after Close: %d lines, want 13", n)
	}
}

func TestTickerWritesSummaries(t *testing.T) {
	l, _, buf := newLogger(t, Options{Interval: 20 * time.Millisecond})
	for range 5 {
		deny(l, "192.0.2.1", "locked_out", "alice")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "audit: suppressed 4 locked_out events from 192.0.2.1") {
		if time.Now().After(deadline) {
			t.Fatalf("no summary from the ticker:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRemoteFromWith: a logger that carries the remote address from
// .With is keyed on it like a record that names it itself.
func TestRemoteFromWith(t *testing.T) {
	l, h, buf := newLogger(t, Options{})
	for _, r := range []string{"192.0.2.1", "192.0.2.2"} {
		c := l.With("remote", r)
		for range 3 {
			c.Info("decision", "result", "deny", "reason", "bad_code", "user", "alice")
		}
	}
	h.Close()
	if n := strings.Count(buf.String(), "audit: suppressed 2 bad_code events from 192.0.2."); n != 2 {
		t.Errorf("%d summaries, want one per source:\n%s", n, buf.String())
	}
}
