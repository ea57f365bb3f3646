package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/account"
	"github.com/stepgate/stepgate/internal/account/importfile"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/password"
	"github.com/stepgate/stepgate/internal/testenv/slapd"
)

// importRate measures `stepgate user import` of a real slapcat dump: a
// slapd+otp directory of p.imports people, each with an {SSHA} password
// and a TOTP token, read, checked and written in one transaction (the
// same calls the command makes, timed from the file's bytes to the
// commit).
func importRate(t *testing.T, p profile) []string {
	var ldif strings.Builder
	for i := 0; i < p.imports; i++ {
		h, err := password.HashSSHA(fmt.Sprintf("pw-%06d", i))
		if err != nil {
			t.Fatal(err)
		}
		key := []byte(fmt.Sprintf("key-%016d", i))
		ldif.WriteString(slapd.Person{UID: fmt.Sprintf("user%06d", i), Mail: fmt.Sprintf("user%06d@example.org", i), Password: h, TOTPSecret: key}.LDIF())
	}
	dir := slapd.Start(t, slapd.Options{OTP: true, NoSync: true, Quiet: true, LDIF: ldif.String()})
	dump := []byte(dir.Slapcat())
	dir.Stop()

	ctx := context.Background()
	st, err := datadir.New(filepath.Join(t.TempDir(), "data")).Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	accs, err := importfile.Parse(dump, importfile.LDIF, importfile.Options{Source: "dump.ldif"})
	if err != nil {
		t.Fatal(err)
	}
	parsed := time.Since(start)
	plan, err := account.New(st, account.Options{}).Import(ctx, accs, false)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(plan) != p.imports {
		t.Fatalf("imported %d accounts, want %d", len(plan), p.imports)
	}
	return []string{fmt.Sprintf("Import of a slapd+otp slapcat dump (%d people, {SSHA} and a TOTP token each, %.1f MB of LDIF): %.0f accounts/s (%.1f s, of which reading the LDIF %.1f s; one transaction)",
		p.imports, float64(len(dump))/1e6, float64(p.imports)/took.Seconds(), took.Seconds(), parsed.Seconds())}
}
