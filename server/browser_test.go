//go:build browser

package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsreactor/wsreactor/server"
)

// browserPage connects with the browser's own WebSocket, subscribes, and reports each
// step to the test's HTTP server; the message it receives is also shown on the page.
const browserPage = `<!doctype html><html><body><p id="out">waiting</p><script>
const report = (path, body) => fetch(path, {method: "POST", body: body});
const ws = new WebSocket(%q);
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === "welcome") ws.send(JSON.stringify({op: "sub", channel: "browser:news"}));
  if (m.type === "subscribed") report("/ready", m.channel);
  if (m.type === "message") {
    document.getElementById("out").textContent = JSON.stringify(m.data);
    report("/result", document.getElementById("out").textContent);
  }
};
ws.onerror = () => report("/result", "websocket error");
</script></body></html>`

// TestBrowserReceivesPublish runs headless Chromium (scripts/install-chromium.sh) against
// a real node: the page subscribes through new WebSocket, the test publishes through the
// admin API, and the page must show exactly the published data.
func TestBrowserReceivesPublish(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: run scripts/install-chromium.sh (make browser-test does)")
	}
	srv, err := server.New(server.Options{
		Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	select {
	case <-srv.Started():
	case err := <-runErr:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()

	ready, result := make(chan string, 1), make(chan string, 1)
	mux := http.NewServeMux()
	wsURL := "ws://" + srv.Addr().String() + "/"
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, browserPage, wsURL)
	})
	report := func(ch chan string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			select {
			case ch <- string(b):
			default:
			}
		}
	}
	mux.HandleFunc("POST /ready", report(ready))
	mux.HandleFunc("POST /result", report(result))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: mux}
	go func() { _ = page.Serve(ln) }()
	defer page.Close()

	profile := t.TempDir()
	bctx, bcancel := context.WithTimeout(ctx, 60*time.Second)
	defer bcancel()
	cmd := exec.CommandContext(bctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile, "--remote-debugging-port=0",
		"http://"+ln.Addr().String()+"/")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	} else {
		cmd.Stderr = io.Discard
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	select {
	case ch := <-ready:
		if ch != "browser:news" {
			t.Fatalf("page subscribed to %q", ch)
		}
	case r := <-result:
		t.Fatalf("page failed before subscribing: %s", r)
	case <-bctx.Done():
		t.Fatal("the browser never reported its subscription")
	}
	body := `{"channel":"browser:news","data":{"headline":"hello, browser"}}`
	resp, err := http.Post("http://"+srv.AdminAddr().String()+"/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	select {
	case got := <-result:
		if want := `{"headline":"hello, browser"}`; got != want {
			t.Fatalf("page shows %q, want %q", got, want)
		}
	case <-bctx.Done():
		t.Fatal("the browser never showed the published message")
	}
}
