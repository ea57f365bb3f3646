package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new folder and unmounts it when
// the test ends, after everything registered later (a server using it)
// has been cleaned up. Mounting needs root: without it the test skips
// loudly, or fails under STEPGATE_REQUIRE_INTEGRATION=1.
func Tmpfs(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("INTEGRATION TEST SKIPPED: cannot mount a tmpfs (needs root): %v: %s", err, out)
		if Required() {
			t.Fatal(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system says ENOSPC, and
// returns its path: removing it frees the space again.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Big writes first, then down to single bytes, so that not even a
	// partial page is left.
	for _, n := range []int{1 << 16, 1 << 12, 1} {
		buf := make([]byte, n)
		for {
			_, err := f.Write(buf)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("filling %s: %v", dir, err)
			}
		}
	}
	return path
}
