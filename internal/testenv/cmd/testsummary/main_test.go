package main

import (
	"os"
	"strings"
	"testing"
)

// TestMixedRun feeds a recorded `go test -json ./...` of five packages: a
// failing one (a failed test, a failed subtest under a failing parent, a
// passing and two skipped tests), a passing one, one without tests, one
// that does not build and one whose test panics. mixed.golden is what
// `go test ./...` printed for the same run (timings aside, and the build
// error, which go test writes to standard error), followed by the skips.
func TestMixedRun(t *testing.T) {
	in, err := os.Open("testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	want, err := os.ReadFile("testdata/mixed.golden")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	failed, err := summarize(in, &out)
	if err != nil || !failed {
		t.Fatalf("summarize = %v, %v; want failed", failed, err)
	}
	if out.String() != string(want) {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	// The properties the golden file holds, spelled out.
	for _, s := range []string{
		"ok  \texample.com/tsx/b\t0.009s\n",
		"?   \texample.com/tsx/c\t[no test files]\n",
		"--- FAIL: TestSub (0.00s)\n    a_test.go:8: parent before\n    --- FAIL: TestSub/bad (0.00s)\n        a_test.go:10: sub log\n",
		"# example.com/tsx/d [example.com/tsx/d.test]\nd/d_test.go:5:33: undefined: undefined\n",
		"FAIL\texample.com/tsx/d [build failed]\n",
		"--- FAIL: TestPanic (0.00s)\npanic: assignment to entry in nil map",
		"--- SKIP: example.com/tsx/a  TestSkip\n        a_test.go:6: slapd not found; install it\n",
		"--- SKIP: example.com/tsx/a  TestSub/skipped\n        a_test.go:11: no dovecot\n",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	for _, s := range []string{"=== RUN", "--- PASS", "hidden", "sub ok log", "--- SKIP: TestSkip"} {
		if strings.Contains(out.String(), s) {
			t.Errorf("output holds %q, which go test without -v does not print", s)
		}
	}
	if !strings.HasSuffix(out.String(), "\nFAIL\n") {
		t.Errorf("output does not end with go test's closing FAIL line")
	}
}

// TestPassingRun: a run where everything passed ends with the ok lines
// (and the skips, when there are some), no FAIL, and exit status 0; a
// line that is not JSON (go test's own complaints) passes through.
func TestPassingRun(t *testing.T) {
	const run = `{"Action":"start","Package":"p/one"}
{"Action":"run","Package":"p/one","Test":"TestA"}
{"Action":"output","Package":"p/one","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p/one","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p/one","Test":"TestA","Elapsed":0}
{"Action":"output","Package":"p/one","Output":"PASS\n"}
{"Action":"output","Package":"p/one","Output":"ok  \tp/one\t0.010s\n"}
{"Action":"pass","Package":"p/one","Elapsed":0.01}
go: warning: "./nothing/..." matched no packages
{"Action":"start","Package":"p/two"}
{"Action":"output","Package":"p/two","Output":"ok  \tp/two\t0.020s [no tests to run]\n"}
{"Action":"pass","Package":"p/two","Elapsed":0.02}
`
	var out strings.Builder
	failed, err := summarize(strings.NewReader(run), &out)
	if err != nil || failed {
		t.Fatalf("summarize = %v, %v; want passed", failed, err)
	}
	want := "ok  \tp/one\t0.010s\n" +
		"go: warning: \"./nothing/...\" matched no packages\n" +
		"ok  \tp/two\t0.020s [no tests to run]\n"
	if out.String() != want {
		t.Fatalf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

// TestUnfinishedPackage: a stream that stops inside a package (go test
// killed) is a failure, with what the running test printed.
func TestUnfinishedPackage(t *testing.T) {
	const run = `{"Action":"start","Package":"p/one"}
{"Action":"run","Package":"p/one","Test":"TestHang"}
{"Action":"output","Package":"p/one","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"p/one","Test":"TestHang","Output":"    hang_test.go:9: waiting for slapd\n"}
`
	var out strings.Builder
	failed, err := summarize(strings.NewReader(run), &out)
	if err != nil || !failed {
		t.Fatalf("summarize = %v, %v; want failed", failed, err)
	}
	if want := "    hang_test.go:9: waiting for slapd\nFAIL\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}
