package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestEnvExampleListsEveryVariable: deploy/env.example has a line KEY=…
// for every environment variable the binary's code reads.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "env.example"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if k, _, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			listed[k] = true
		}
	}
	read := regexp.MustCompile(`(?:Env|Getenv|getenv|envDuration|envInt|envString|envBool)\((?:sys, )?"([A-Z][A-Z0-9_]+)"`)
	found := map[string][]string{}
	for _, dir := range []string{"cmd", "worker", "cache", "predictor", "model"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasSuffix(path, "s3test")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range read.FindAllStringSubmatch(string(src), -1) {
				rel, _ := filepath.Rel(root, path)
				found[m[1]] = append(found[m[1]], rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) < 20 {
		t.Fatalf("found only %d variables read by the code: the pattern is stale", len(found))
	}
	var missing []string
	for k, files := range found {
		if !listed[k] {
			missing = append(missing, k+" ("+strings.Join(slices.Compact(files), ", ")+")")
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("deploy/env.example lacks:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestProcfile: every process type runs a subcommand that exists.
func TestProcfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Procfile"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := commands()
	types := 0
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, command, ok := strings.Cut(line, ":")
		f := strings.Fields(command)
		if !ok || len(f) < 2 || f[0] != "maskpredictor" {
			t.Errorf("Procfile line %q: want `type: maskpredictor <command>`", line)
			continue
		}
		if _, ok := cmds[f[1]]; !ok {
			t.Errorf("Procfile %s: unknown command %q", name, f[1])
		}
		types++
	}
	if types == 0 {
		t.Fatal("no process types")
	}
}

// TestDockerfile checks what the Dockerfile promises without a Docker
// daemon: multi-stage, static build, non-root, no downloads but modules;
// and that its build command works here.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n := strings.Count(s, "\nFROM "); n < 2 {
		t.Errorf("%d FROM lines: want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build -trimpath", "./cmd/maskpredictor", "\nFROM scratch", "\nUSER 65532:65532"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, bad := range []string{"curl ", "wget ", "apt-get", "apk add", "\nUSER root", "\nUSER 0"} {
		if strings.Contains(s, bad) {
			t.Errorf("Dockerfile has %q", strings.TrimSpace(bad))
		}
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit (with ExecStart
// pointed at an executable that exists here).
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "maskpredictor.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"DynamicUser=yes", "CapabilityBoundingSet=\n", "KillSignal=SIGTERM"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	unit = strings.ReplaceAll(unit, "/usr/local/bin/maskpredictor", "/bin/true")
	path := filepath.Join(t.TempDir(), "maskpredictor.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
