package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stepgate/stepgate/internal/testenv"
)

// nginxMailModule is where Debian's libnginx-mod-mail puts the module.
const nginxMailModule = "/usr/lib/nginx/modules/ngx_mail_module.so"

// nginxIMAP is nginx's mail proxy (IMAP) in front of upstream, as a user
// would otherwise run it: nginx takes the LOGIN, asks an auth_http
// responder where to go, logs in there with the client's password and
// then passes bytes both ways. The responder here is a few lines of Go
// that names upstream for everyone; a real one would check the
// password as well, so nginx's numbers are, if anything, flattering.
type nginxIMAP struct {
	addr string
}

// startNginxIMAP returns nil, having said why, when nginx or its mail
// module is not installed (a failure under STEPGATE_REQUIRE_INTEGRATION=1).
func startNginxIMAP(t *testing.T, upstream string) *nginxIMAP {
	t.Helper()
	bin, ok := testenv.LookPath("nginx")
	_, modErr := os.Stat(nginxMailModule)
	if !ok || modErr != nil {
		msg := "IMAP through nginx's mail proxy: nginx or libnginx-mod-mail is not installed (apt-get install nginx libnginx-mod-mail, as .ci/run does)"
		if testenv.Required() {
			t.Error(msg + "; STEPGATE_REQUIRE_INTEGRATION=1 makes this a failure")
		} else {
			t.Log("BENCH PART SKIPPED: " + msg)
		}
		skippedParts = append(skippedParts, msg)
		return nil
	}
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	})}
	go hs.Serve(auth)
	t.Cleanup(func() { hs.Close() })

	dir := t.TempDir()
	// nginx's workers drop root for nobody: let them read the folder.
	os.Chmod(dir, 0o755)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	// worker_processes auto: one per CPU, as a packaged nginx runs;
	// proxy_buffer stays at its default, as most deployments leave it.
	conf := fmt.Sprintf(`load_module %s;
worker_processes auto;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 16384; }
mail {
  server_name localhost;
  auth_http %s/auth;
  server {
    listen %s;
    protocol imap;
    proxy on;
  }
}
`, nginxMailModule, dir, dir, auth.Addr().String(), listen)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var out []byte
	proc := &testenv.Process{T: t, Name: "nginx", Addr: listen,
		Log: func() string {
			logMu.Lock()
			defer logMu.Unlock()
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return string(out) + string(b)
		},
		Command: func() *exec.Cmd {
			// -e: the error log before the configuration is read (the
			// packaged default, /var/log/nginx, may not be writable).
			cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", cf, "-g", "daemon off;")
			cmd.Stdout, cmd.Stderr = writerFunc(func(b []byte) (int, error) {
				logMu.Lock()
				defer logMu.Unlock()
				out = append(out, b...)
				return len(b), nil
			}), nil
			cmd.Stderr = cmd.Stdout
			return cmd
		}}
	proc.Start()
	t.Cleanup(proc.Stop)
	return &nginxIMAP{addr: listen}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
