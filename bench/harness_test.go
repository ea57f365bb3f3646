package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/loadgen"
)

var (
	outDir = flag.String("bench-out", "results", "folder for the table, the JSON and the plots")
	// A few rows at a time, on a machine shared with other work:
	// -bench-only 'proxy-|imap-fetch' -bench-conns 1,8,64 -bench-duration 1s.
	only      = flag.String("bench-only", "", "run only the measurements whose id matches this regexp (ids: see measurement.id)")
	onlyConns = flag.String("bench-conns", "", "connection counts instead of the profile's, comma-separated")
	onlyDur   = flag.Duration("bench-duration", 0, "duration of one run instead of the profile's")
)

// want reports whether any of the measurements ids is to run.
func want(ids ...string) bool {
	if *only == "" {
		return true
	}
	re := regexp.MustCompile(*only)
	for _, id := range ids {
		if re.MatchString(id) {
			return true
		}
	}
	return false
}

// narrowed is p with the command line's -bench-conns and -bench-duration.
func narrowed(t *testing.T, p profile) profile {
	if *onlyDur > 0 {
		p.duration = *onlyDur
	}
	if *onlyConns != "" {
		p.conns = nil
		for _, f := range strings.Split(*onlyConns, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("-bench-conns: %q is not a connection count", f)
			}
			p.conns = append(p.conns, n)
		}
	}
	return p
}

// profile sizes a run: "full" for the numbers in the README, "smoke" for
// CI, which only proves the harness still works end to end.
type profile struct {
	name     string
	reps     int
	duration time.Duration
	conns    []int
	users    int // accounts in each directory
	messages int // in the IMAP mailbox
	sessions int // for the memory measurement
	idle     int // idle connections for the memory measurement
	imports  int // people in the slapcat dump that `user import` reads
}

var profiles = map[string]profile{
	"full":  {name: "full", reps: 3, duration: 2 * time.Second, conns: []int{1, 8, 64}, users: 20000, messages: 1000, sessions: 100000, idle: 10000, imports: 100000},
	"smoke": {name: "smoke", reps: 1, duration: 150 * time.Millisecond, conns: []int{1, 8}, users: 300, messages: 20, sessions: 2000, idle: 200, imports: 200},
}

// side is one of the two things compared.
type side struct {
	name string
	// run measures once at conns connections; rep counts from 0.
	run func(t *testing.T, conns, rep int) (loadgen.Result, error)
}

// measurement is one row group of the table: stepgate against a
// reference, at several connection counts.
type measurement struct {
	id, title, unit string
	stepgate, ref   side
	// target, when set, is the ratio stepgate/reference to meet.
	target float64
	// showSuccess adds the reference's success rate (slapd+otp replays).
	showSuccess bool
	note        string
	// also, when set, is a second reference run in the same rounds
	// (stepgate, ref, also, stepgate, ...): its row shares stepgate's
	// numbers, so both ratios come from one run.
	also *side
	// alsoTarget is the ratio stepgate/also to meet.
	alsoTarget float64
}

// row is the medians of one measurement at one connection count.
type row struct {
	Measurement string  `json:"measurement"`
	Unit        string  `json:"unit"`
	Conns       int     `json:"conns"`
	Stepgate    stats   `json:"stepgate"`
	Reference   stats   `json:"reference"`
	RefName     string  `json:"reference_name"`
	Ratio       float64 `json:"ratio"`
	Target      float64 `json:"target,omitempty"`
	Note        string  `json:"note,omitempty"`
	showSuccess bool
}

type stats struct {
	Rate    float64 `json:"rate"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	Success float64 `json:"success_rate"`
	Error   string  `json:"error,omitempty"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianStats(rs []loadgen.Result) stats {
	var rate, p50, p99, succ []float64
	st := stats{}
	for _, r := range rs {
		rate = append(rate, r.Rate())
		p50 = append(p50, float64(r.P50.Microseconds()))
		p99 = append(p99, float64(r.P99.Microseconds()))
		succ = append(succ, r.SuccessRate())
		if r.FirstError != nil && st.Error == "" && r.OK == 0 {
			st.Error = r.FirstError.Error()
		}
	}
	st.Rate, st.P50us, st.P99us, st.Success = median(rate), median(p50), median(p99), median(succ)
	return st
}

// runMeasurement runs stepgate and the reference interleaved (A B A B)
// at each connection count, reps times, and returns the medians.
func runMeasurement(t *testing.T, p profile, m measurement) []row {
	var rows []row
	if !want(m.id) {
		return nil
	}
	for _, conns := range p.conns {
		var a, b, c []loadgen.Result
		sides := []struct {
			side *side
			out  *[]loadgen.Result
		}{{&m.stepgate, &a}, {&m.ref, &b}}
		if m.also != nil {
			sides = append(sides, struct {
				side *side
				out  *[]loadgen.Result
			}{m.also, &c})
		}
		for rep := 0; rep < p.reps; rep++ {
			for _, s := range sides {
				r, err := s.side.run(t, conns, rep)
				if err != nil {
					t.Errorf("%s, %s at %d conns: %v", m.title, s.side.name, conns, err)
					continue
				}
				t.Logf("%s: %s %s", m.title, s.side.name, r)
				*s.out = append(*s.out, r)
			}
		}
		rows = append(rows, newRow(m, conns, a, b, m.ref.name, m.target))
		if m.also != nil {
			rows = append(rows, newRow(m, conns, a, c, m.also.name, m.alsoTarget))
		}
	}
	return rows
}

func newRow(m measurement, conns int, sg, ref []loadgen.Result, refName string, target float64) row {
	r := row{Measurement: m.title, Unit: m.unit, Conns: conns, Stepgate: medianStats(sg), Reference: medianStats(ref),
		RefName: refName, Target: target, Note: m.note, showSuccess: m.showSuccess}
	if r.Reference.Rate > 0 {
		r.Ratio = r.Stepgate.Rate / r.Reference.Rate
	}
	return r
}

// TestBench is the harness. Run it with `make bench` (full) or `make
// bench-smoke` (CI).
func TestBench(t *testing.T) {
	mode := os.Getenv("STEPGATE_BENCH")
	p, ok := profiles[mode]
	if !ok {
		t.Skip("the benchmark harness runs with `make bench` or `make bench-smoke` (STEPGATE_BENCH=full|smoke)")
	}
	p = narrowed(t, p)
	raiseFileLimit(t)
	report := &report{profile: p, started: time.Now()}

	if want("reconnect-plain", "reconnect-otp", "first-sign-in", "concurrent-one-code", "wrong-code", "lockout",
		"proxy-bind", "proxy-search", "first-sign-in-directory") || want(storeIDs...) {
		ldap := newLDAPBench(t, p)
		for _, m := range ldap.measurements() {
			report.rows = append(report.rows, runMeasurement(t, p, m)...)
		}
		if want("concurrent-one-code") {
			report.extra = append(report.extra, ldap.concurrentOneCode(t, p)...)
		}
		if want("wrong-code", "lockout") {
			for _, m := range ldap.failureMeasurements(t) {
				report.rows = append(report.rows, runMeasurement(t, p, m)...)
			}
		}
		if want(storeIDs...) {
			stores, extra := ldap.storeMeasurements(t)
			for _, m := range stores {
				report.rows = append(report.rows, runMeasurement(t, p, m)...)
			}
			report.extra = append(report.extra, extra...)
		}
		if want("proxy-bind", "proxy-search") {
			if m, ok := ldap.proxyMeasurements(t); ok {
				for _, x := range m {
					report.rows = append(report.rows, runMeasurement(t, p, x)...)
				}
			}
		}
		if want("first-sign-in-directory") {
			for _, m := range ldap.directoryMeasurements(t) {
				report.rows = append(report.rows, runMeasurement(t, p, m)...)
			}
		}
		ldap.close()
	}

	if want("imap-login", "imap-fetch", "imap-idle") {
		im := newIMAPBench(t, p)
		for _, m := range im.measurements() {
			report.rows = append(report.rows, runMeasurement(t, p, m)...)
		}
		if want("imap-fetch") {
			report.extra = append(report.extra, im.fetch(t, p)...)
		}
		if want("imap-idle") {
			report.extra = append(report.extra, im.idle(t, p)...)
		}
	}

	if want("smtp-submit", "pop3-retr") {
		mail := newMailBench(t, p)
		for _, m := range mail.measurements() {
			report.rows = append(report.rows, runMeasurement(t, p, m)...)
		}
		if want("pop3-retr") {
			report.extra = append(report.extra, mail.retr(t, p)...)
		}
	}

	if want("memory") {
		report.extra = append(report.extra, memory(t, p)...)
	}
	if want("import") {
		report.extra = append(report.extra, importRate(t, p)...)
	}
	report.skipped = append(report.skipped, skippedParts...)

	dir := *outDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(".", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	md := report.markdown()
	fmt.Println(md)
	if err := report.write(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("results in %s", dir)
}

// skippedParts says what could not run and why.
var skippedParts []string

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s/%s, %s", runtime.NumCPU(), cpu, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
