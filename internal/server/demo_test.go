package server

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCheckCommand: the banner's check line names this binary as the
// shell that started it can run it (not a `stepgate` that PATH may lack),
// and the data folder whenever it is not the default one.
func TestCheckCommand(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip("no executable path on this system:", err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	t.Setenv("STEPGATE_DATA_DIR", "")
	name := filepath.Base(exe)

	t.Chdir(filepath.Dir(exe))
	if got, want := checkCommand("./stepgate-data"), "./"+name; got != want {
		t.Errorf("from the binary's folder: %q, want %q (a bare name is looked up on PATH)", got, want)
	}
	if got, want := checkCommand("/srv/step gate"), "./"+name+" --data-dir '/srv/step gate'"; got != want {
		t.Errorf("with another data folder: %q, want %q", got, want)
	}

	t.Chdir(filepath.Dir(filepath.Dir(exe)))
	if got, want := checkCommand("stepgate-data"), filepath.Join(filepath.Base(filepath.Dir(exe)), name); got != want {
		t.Errorf("from the folder above (as make run's bin/stepgate): %q, want %q", got, want)
	}

	t.Chdir(t.TempDir())
	if got := checkCommand("stepgate-data"); got != exe && got != shellQuote(exe) {
		t.Errorf("from elsewhere: %q, want the absolute path %q", got, exe)
	}

	t.Setenv("STEPGATE_DATA_DIR", "/elsewhere")
	if got, want := checkCommand("stepgate-data"), shellQuote(exe)+" --data-dir stepgate-data"; got != want {
		t.Errorf("with STEPGATE_DATA_DIR set: %q, want %q", got, want)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"bin/stepgate":   "bin/stepgate",
		"/a b/stepgate":  "'/a b/stepgate'",
		"it's":           `'it'\''s'`,
		"":               "''",
		"$HOME/stepgate": "'$HOME/stepgate'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
