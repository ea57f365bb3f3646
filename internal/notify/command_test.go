package notify_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepgate/stepgate/internal/notify"
	"github.com/stepgate/stepgate/internal/store"
)

// script writes an executable /bin/sh script into a temporary folder.
func script(t *testing.T, body string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "deliver.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCommandMessageOnStdinNotArgv(t *testing.T) {
	path, dir := script(t, `cat > "$OUT/stdin"; printf '%s\n' "$0" "$@" > "$OUT/argv"; env > "$OUT/env"`+"\n")
	// The script finds its folder through an argument, not through the
	// environment stepgate builds.
	path2 := filepath.Join(dir, "wrap.sh")
	os.WriteFile(path2, []byte("#!/bin/sh\nOUT="+dir+" exec "+path+` "$@"`+"\n"), 0o700)
	tr, err := notify.NewCommand(path2, []string{"--to", "{to}", "-len", "400"}, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := notify.NewChannel(store.MethodSMS, "command", tr, fast(0), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "+447700900123", Body: "864209 is your code", Secrets: []string{"864209"}}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(dir, "stdin")); got != "864209 is your code\n" {
		t.Fatalf("stdin = %q", got)
	}
	argv := read(t, filepath.Join(dir, "argv"))
	if strings.Contains(argv, "864209") || !strings.Contains(argv, "--to\n+447700900123\n-len\n400") {
		t.Fatalf("argv = %q", argv)
	}
	env := read(t, filepath.Join(dir, "env"))
	if !strings.Contains(env, "STEPGATE_TO=+447700900123") || !strings.Contains(env, "STEPGATE_CHANNEL=sms") || strings.Contains(env, "864209") {
		t.Fatalf("env = %q", env)
	}
}

func TestCommandSendmailGetsWholeMail(t *testing.T) {
	path, dir := script(t, "cat > \""+"$(dirname \"$0\")"+"/mail\"\n")
	tr, err := notify.NewCommand(path, []string{"-i", "--", "{to}"}, "stepgate <noreply@example.org>")
	if err != nil {
		t.Fatal(err)
	}
	ch := notify.NewChannel(store.MethodEmail, "command", tr, fast(0), nil)
	if err := ch.Send(context.Background(), notify.Message{To: "alice@example.org", Subject: "Your code", Body: "code 112233"}); err != nil {
		t.Fatal(err)
	}
	mail := read(t, filepath.Join(dir, "mail"))
	for _, want := range []string{"To: <alice@example.org>", "From: \"stepgate\" <noreply@example.org>", "Subject: Your code", "112233"} {
		if !strings.Contains(mail, want) {
			t.Fatalf("mail lacks %q:\n%s", want, mail)
		}
	}
}

func TestCommandFailures(t *testing.T) {
	path, dir := script(t, "echo try >> \"$(dirname \"$0\")/tries\"; cat; echo \"gateway down\" >&2; exit ${CODE:-75}\n")
	run := func(code int, retries int) error {
		wrap := filepath.Join(dir, "wrap"+strconv.Itoa(code)+".sh")
		os.WriteFile(wrap, []byte("#!/bin/sh\nCODE="+strconv.Itoa(code)+" exec "+path+"\n"), 0o700)
		os.Remove(filepath.Join(dir, "tries"))
		tr, err := notify.NewCommand(wrap, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		log, logs := newLog()
		err = notify.NewChannel(store.MethodSMS, "command", tr, fast(retries), log).
			Send(context.Background(), notify.Message{To: "+447700900123", Body: "code 556677", Secrets: []string{"556677"}})
		if l := logs.String(); strings.Contains(l, "556677") || strings.Contains(l, "7700900123") {
			t.Fatalf("log shows the code or number (the script echoed them):\n%s", l)
		}
		return err
	}
	// EX_TEMPFAIL is retried; the script's stderr reaches the error.
	err := run(75, 2)
	if err == nil || !strings.Contains(err.Error(), "gateway down") || strings.Contains(err.Error(), "556677") {
		t.Fatalf("err = %v", err)
	}
	if n := strings.Count(read(t, filepath.Join(dir, "tries")), "try"); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	// EX_CONFIG is not.
	if err := run(78, 2); err == nil {
		t.Fatal("exit 78 taken for success")
	}
	if n := strings.Count(read(t, filepath.Join(dir, "tries")), "try"); n != 1 {
		t.Fatalf("%d runs after exit 78, want 1", n)
	}
}

func TestCommandTimeoutKillsItsChildren(t *testing.T) {
	path, dir := script(t, "sleep 60 &\necho $! > \"$(dirname \"$0\")/child\"\nwait\n")
	tr, err := notify.NewCommand(path, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	r := fast(0)
	r.Timeout = 300 * time.Millisecond
	err = notify.NewChannel(store.MethodSMS, "command", tr, r, nil).Send(context.Background(), notify.Message{To: "+447700900123", Body: "x"})
	if err == nil {
		t.Fatal("a command that never ends succeeded")
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(read(t, filepath.Join(dir, "child"))))
	if perr != nil {
		t.Fatal(perr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatal("the script's child outlived the timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommandRefused(t *testing.T) {
	if _, err := notify.NewCommand("sendmail", nil, ""); err == nil {
		t.Fatal("a relative path was accepted")
	}
}
