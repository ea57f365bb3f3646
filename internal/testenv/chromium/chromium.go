// Package chromium starts a headless Chromium for browser tests, driven
// with chromedp. It skips loudly when Chromium is not installed, or fails
// under STEPGATE_REQUIRE_INTEGRATION=1.
package chromium

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/stepgate/stepgate/internal/testenv"
)

// Browser returns a browser tab's context, closed when the test ends.
// width and height are the window's size in CSS pixels.
func Browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, ok := testenv.LookPath(name); ok {
			bin = p
			break
		}
	}
	if bin == "" {
		bin = testenv.NeedProgram(t, "chromium") // skips or fails, naming the package
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", "new"),
		// CI runs as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first run starts the browser, and the browser lives as long as
	// that run's context: no timeout here (steps take their own).
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}

// ScreenshotDir is where a test writes its screenshots:
// $STEPGATE_SCREENSHOTS when set (created), or a temporary folder that
// the test log names.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("STEPGATE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(d)
		t.Logf("screenshots in %s", abs)
		return abs
	}
	d := t.TempDir()
	t.Logf("screenshots in %s (set STEPGATE_SCREENSHOTS to keep them)", d)
	return d
}
