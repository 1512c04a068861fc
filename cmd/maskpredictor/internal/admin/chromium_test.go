package admin

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium finds Debian's headless-capable Chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser tests")
	return ""
}

// artifactsDir is where screenshots go: $ARTIFACTS_DIR, else
// testdata/artifacts (ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runChromium runs one headless Chromium with a profile of its own and
// returns its standard output (the DOM, for --dump-dom).
func runChromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,1000",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// checkScreenshot decodes a PNG and checks that something was drawn.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	r := img.Bounds()
	dark := 0
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			if lum(img, x, y) < 0x8000 {
				dark++
			}
		}
	}
	if dark < 500 {
		t.Errorf("screenshot %s looks blank (%d dark samples)", path, dark)
	}
	t.Logf("screenshot: %s (%dx%d)", path, r.Dx(), r.Dy())
}

func lum(img image.Image, x, y int) uint32 {
	r, g, b, _ := img.At(x, y).RGBA()
	return (299*r + 587*g + 114*b) / 1000
}

// TestChromium drives the dashboard with headless Chromium: refused
// without credentials (401, seen in Chromium's network log), the overview
// with the model version and the mask_predictions queue, and asynqmon's
// React UI rendering its queue list from its API behind the same auth.
func TestChromium(t *testing.T) {
	bin := chromium(t)
	f := newFixture(t, Config{User: "ops", Password: "s3cret-pw"})
	u, err := url.Parse(f.URL) // http://127.0.0.1:<port>
	if err != nil {
		t.Fatal(err)
	}
	arts := artifactsDir(t)

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
