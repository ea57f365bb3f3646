// Command testsummary reads `go test -json` on standard input and prints
// what `go test` prints without -v (a passing package's ok line, a failing
// package's failed tests with their output and its FAIL lines, build
// errors), then every skipped test with its skip message. Without -v,
// go test hides skips, so an integration test that skipped for want of
// slapd or Dovecot looked the same as one that passed.
//
//	go test -json ./... | go run ./internal/testenv/cmd/testsummary
//
// It exits 1 when a package failed or did not build, 0 otherwise.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

func main() {
	failed, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// event is one line of `go test -json` (cmd/test2json, and the build
// events of go test itself).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

// test is a test that has not ended: its output without the === framing
// lines of -v, and where its --- line came.
type test struct {
	lines    []string
	header   string
	headerAt int
}

type pkg struct {
	tests map[string]*test
	order []string // tests in the order they started, for ones that never end
	out   []string // package lines and top-level failed tests, in order
}

// Skip is a skipped test and what it said.
type Skip struct {
	Package, Test string
	Message       []string
}

type summary struct {
	w      io.Writer
	pkgs   map[string]*pkg
	skips  []Skip
	failed bool
}

func summarize(r io.Reader, w io.Writer) (failed bool, err error) {
	s := &summary{w: w, pkgs: map[string]*pkg{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			// Not an event (go test's own complaints when stderr is
			// merged): pass it on as it came.
			fmt.Fprintln(w, line)
			continue
		}
		s.event(e)
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("reading go test -json: %w", err)
	}
	s.finish()
	return s.failed, nil
}

func (s *summary) pkg(name string) *pkg {
	p := s.pkgs[name]
	if p == nil {
		p = &pkg{tests: map[string]*test{}}
		s.pkgs[name] = p
	}
	return p
}

func (s *summary) event(e event) {
	switch e.Action {
	case "build-output":
		io.WriteString(s.w, e.Output)
		return
	case "build-fail":
		s.failed = true
		return
	}
	if e.Package == "" {
		return
	}
	p := s.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			p.out = append(p.out, e.Output)
		case "pass", "skip", "fail":
			s.endPackage(e.Package, p, e.Action)
		}
		return
	}
	t := p.tests[e.Test]
	if t == nil {
		t = &test{}
		p.tests[e.Test] = t
		p.order = append(p.order, e.Test)
	}
	switch e.Action {
	case "output":
		t.output(e.Test, e.Output)
	case "pass":
		delete(p.tests, e.Test)
	case "skip":
		delete(p.tests, e.Test)
		s.skips = append(s.skips, Skip{Package: e.Package, Test: e.Test, Message: trimmed(t.lines)})
	case "fail":
		delete(p.tests, e.Test)
		p.place(e.Test, t.block())
	}
}

// framing are the lines -v adds that go test without -v does not print.
var framing = []string{"=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME "}

func (t *test) output(name, line string) {
	for _, f := range framing {
		if strings.HasPrefix(line, f) {
			return
		}
	}
	trim := strings.TrimLeft(line, " ")
	for _, r := range []string{"--- FAIL: ", "--- PASS: ", "--- SKIP: "} {
		if strings.HasPrefix(trim, r+name+" (") && t.header == "" {
			t.header, t.headerAt = line, len(t.lines)
			return
		}
	}
	t.lines = append(t.lines, line)
}

// block is a failed test as go test prints it without -v: its --- FAIL
// line, then its output (a failed subtest's block included where it
// ended). Output after the --- line (a panic's trace) stays after it.
func (t *test) block() []string {
	if t.header == "" {
		return t.lines
	}
	if t.headerAt == len(t.lines) {
		return append([]string{t.header}, t.lines...)
	}
	out := append([]string{}, t.lines[:t.headerAt]...)
	out = append(out, t.header)
	return append(out, t.lines[t.headerAt:]...)
}

// place puts a failed test's block into its parent's output, indented
// one level as go test does without -v (with -v it is not), or at the
// package's level for a top-level test.
func (p *pkg) place(name string, block []string) {
	if i := strings.LastIndex(name, "/"); i > 0 {
		if parent := p.tests[name[:i]]; parent != nil {
			for _, l := range block {
				parent.lines = append(parent.lines, "    "+l)
			}
			return
		}
	}
	p.out = append(p.out, block...)
}

func (s *summary) endPackage(name string, p *pkg, action string) {
	defer delete(s.pkgs, name)
	switch action {
	case "pass":
		for _, l := range p.out {
			if strings.HasPrefix(l, "ok ") {
				io.WriteString(s.w, l)
			}
		}
	case "skip": // no test files
		for _, l := range p.out {
			io.WriteString(s.w, l)
		}
	case "fail":
		s.failed = true
		// Tests still running when the package failed (a timeout, a
		// panic elsewhere): their output is part of the story.
		for _, n := range p.order {
			if t := p.tests[n]; t != nil {
				for _, l := range t.block() {
					io.WriteString(s.w, l)
				}
			}
		}
		for _, l := range p.out {
			io.WriteString(s.w, l)
		}
	}
}

// finish lists the skipped tests, and ends with go test's closing FAIL
// line when something failed (go test -json leaves it out).
func (s *summary) finish() {
	// A package whose end never came (go test killed): failed.
	for _, name := range slices.Sorted(maps.Keys(s.pkgs)) {
		s.endPackage(name, s.pkgs[name], "fail")
	}
	if len(s.skips) > 0 {
		fmt.Fprintf(s.w, "\nSKIPPED: %d test(s) did not run:\n", len(s.skips))
		for _, sk := range s.skips {
			fmt.Fprintf(s.w, "--- SKIP: %s  %s\n", sk.Package, sk.Test)
			for _, m := range sk.Message {
				fmt.Fprintf(s.w, "        %s\n", m)
			}
		}
	}
	if s.failed {
		fmt.Fprintln(s.w, "FAIL")
	}
}

func trimmed(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
