package server

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/datadir"
	"github.com/stepgate/stepgate/internal/testenv"
)

// TestDemoBannerMailLines: with the demo upstreams (make run), the
// banner's IMAP, POP3 and submission curl lines work as printed, with
// CODE replaced by the current code.
func TestDemoBannerMailLines(t *testing.T) {
	testenv.NeedPrograms(t, "curl", "sh")
	t.Setenv(datadir.KeyFileEnv, "")
	dir := datadir.New(filepath.Join(t.TempDir(), "data"))
	var out bytes.Buffer
	core, _, _ := startWith(t, dir, true, &out, func(c *config.Config) {
		c.IMAP.Listen, c.POP3.Listen, c.Submission.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.IMAP.Upstream = &config.IMAPUpstream{Host: "demo"}
		c.POP3.Upstream = &config.MailUpstream{Host: "demo"}
		c.Submission.Upstream = &config.MailUpstream{Host: "demo"}
	})
	u, err := core.Store.User(context.Background(), DemoUser)
	if err != nil {
		t.Fatal(err)
	}
	auths, _ := core.Store.Authenticators(context.Background(), u.ID, true)
	code, _ := totp.GenerateCode(auths[0].Secret, time.Now())
	want := map[string]string{"imap://": "SEARCH 1", "pop3://": "Subject: Welcome to the stepgate demo mailbox", "smtp://": ""}
	for _, l := range strings.Split(out.String(), "\n") {
		for scheme, output := range want {
			if !strings.Contains(l, scheme) {
				continue
			}
			cmd := strings.TrimSpace(strings.ReplaceAll(l, "CODE'", code+"'"))
			if i := strings.LastIndex(cmd, "   ("); i > 0 {
				cmd = cmd[:i] // the note after the command
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			b, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput()
			cancel()
			if err != nil || !strings.Contains(string(b), output) {
				t.Errorf("banner line %q: %v\n%s", cmd, err, b)
			}
			delete(want, scheme)
		}
	}
	if len(want) > 0 {
		t.Errorf("no banner line for %v:\n%s", want, out.String())
	}
}
