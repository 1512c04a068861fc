// Package chromiumtest runs Debian's headless Chromium for the browser tests
// (the admin dashboard, the review page, Sidekiq Web): finding it, the flags
// that let it run on a machine with a closed network, where screenshots go,
// and a check that a screenshot shows something.
package chromiumtest

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Find returns Chromium's path, or skips the test (apt-get install chromium).
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser test")
	return ""
}

// Flags are the headless flags with profile as --user-data-dir: without the
// background-networking ones, Chromium keeps trying Google's hosts, which a
// closed network refuses many at a time.
func Flags(profile string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,1000",
	}
}

// Run runs one headless Chromium with a fresh profile and args (e.g.
// --dump-dom or --screenshot=PATH, then a URL) for at most timeout, and
// returns its standard output (the DOM, for --dump-dom).
func Run(bin string, timeout time.Duration, args ...string) (string, error) {
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(Flags(profile), args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chromium %v: %w\n%s", args, err, errb.String())
	}
	return out.String(), nil
}

// ArtifactsDir is where screenshots go: $ARTIFACTS_DIR, else testdata/artifacts
// of the test's package (ignored by git).
func ArtifactsDir(t testing.TB) string {
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

// CheckScreenshot decodes the PNG at path and fails when it looks blank
// (fewer than 500 dark samples on a 2-pixel grid).
func CheckScreenshot(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("no screenshot: %w", err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("screenshot %s: %w", path, err)
	}
	r, dark := img.Bounds(), 0
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if (299*cr+587*cg+114*cb)/1000 < 0x8000 {
				dark++
			}
		}
	}
	if dark < 500 {
		return fmt.Errorf("screenshot %s looks blank (%d dark samples)", path, dark)
	}
	return nil
}
