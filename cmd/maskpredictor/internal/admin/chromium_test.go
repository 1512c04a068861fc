package admin

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/chromiumtest"
)

// runChromium runs one headless Chromium (chromiumtest.Run) and returns its
// standard output (the DOM, for --dump-dom).
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := chromiumtest.Run(bin, 90*time.Second, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkScreenshot fails the test when the screenshot at path looks blank.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	if err := chromiumtest.CheckScreenshot(path); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestChromium drives the dashboard with headless Chromium: refused
// without credentials (401, seen in Chromium's network log), the overview
// with the model version and the mask_predictions queue, and asynqmon's
// React UI rendering its queue list from its API behind the same auth.
func TestChromium(t *testing.T) {
	bin := chromiumtest.Find(t)
	f := newFixture(t, Config{User: "ops", Password: "s3cret-pw"})
	u, err := url.Parse(f.URL) // http://127.0.0.1:<port>
	if err != nil {
		t.Fatal(err)
	}
	arts := chromiumtest.ArtifactsDir(t)

	t.Run("no credentials: 401", func(t *testing.T) {
		netlog := filepath.Join(t.TempDir(), "netlog.json")
		dom := runChromium(t, bin, "--log-net-log="+netlog, "--dump-dom", u.String()+"/admin/")
		if strings.Contains(dom, "mask_predictions") || strings.Contains(dom, f.version) {
			t.Errorf("the overview was shown without credentials:\n%s", dom)
		}
		// (Chromium renders no body for a 401 that asks for Basic: it would
		// prompt for credentials.)
		log, err := os.ReadFile(netlog)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("HTTP/1.1 401 Unauthorized")) {
			t.Error("Chromium's network log shows no 401 for /admin/")
		}
	})

	withCreds := *u
	withCreds.User = url.UserPassword("ops", "s3cret-pw")

	t.Run("overview", func(t *testing.T) {
		dom := runChromium(t, bin, "--dump-dom", withCreds.String()+"/admin/")
		for _, want := range []string{f.version, "<code>mask_predictions</code>", "model loaded", `id="dead">1<`} {
			if !strings.Contains(dom, want) {
				t.Errorf("overview DOM lacks %q:\n%s", want, dom)
			}
		}
		shot := filepath.Join(arts, "admin-overview.png")
		runChromium(t, bin, "--screenshot="+shot, withCreds.String()+"/admin/")
		checkScreenshot(t, shot)
	})

	t.Run("asynqmon queue list", func(t *testing.T) {
		// A React app: give it virtual time to fetch /admin/queues/api/queues.
		dom := runChromium(t, bin, "--virtual-time-budget=10000", "--dump-dom", withCreds.String()+"/admin/queues/")
		if !strings.Contains(dom, "mask_predictions") || !strings.Contains(dom, "Latency") {
			t.Errorf("asynqmon did not render its queue list:\n%.3000s", dom)
		}
		shot := filepath.Join(arts, "admin-asynqmon.png")
		runChromium(t, bin, "--virtual-time-budget=10000", "--screenshot="+shot, withCreds.String()+"/admin/queues/")
		checkScreenshot(t, shot)
	})
}
