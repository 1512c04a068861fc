package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
	"github.com/maskpredictor/maskpredictor/internal/modeltest"
)

// modelVariant is a model file whose predictions differ from the others'
// by their labels: the default model with two label names exchanged.
type modelVariant = modeltest.Variant

var e2eNames = []string{
	"3M Aura 9205+ N95", "3M 1860s", "Zimi ZM9233", "BreatheTeq - Large",
	"Honeywell DC365 N95 Small", "Powecom KN95 Black Earloop", "Moldex 2200N95 Medium/Large",
}

func modelVariants(t *testing.T) []modelVariant {
	return modeltest.Variants(t, e2eNames, modeltest.Swaps[:4])
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestHotReloadServeE2E runs the real binary (`maskpredictor serve`,
// MODEL_URI=s3://… on a loopback S3) while four clients call /predict in a
// loop over keep-alive connections, and replaces the model object several
// times, half of them followed by a SIGHUP: no request fails, every answer's
// labels are those its model_version gives, a corrupt upload is rejected
// (the old model keeps serving; /metrics counts it).
func TestHotReloadServeE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary (-short)")
	}
	vs := modelVariants(t)
	byVersion := map[string]modelVariant{}
	for _, v := range vs {
		byVersion[v.Version] = v
	}
	srv := s3test.Start(t, "models")
	uri := srv.URI("prod/model.bin")
	st, err := modelstore.Open(context.Background(), uri, modelstore.Config{Getenv: srv.Getenv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	push := func(data []byte) {
		t.Helper()
		if _, err := st.Put(context.Background(), data); err != nil {
			t.Fatal(err)
		}
	}
	push(vs[0].Data)

	bin := buildBinary(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MODEL_URI=" + uri, "MODEL_POLL=100ms", "LOG_FORMAT=json"}
	for k, v := range srv.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", logs.String())
		}
	}()
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	health := func() (string, bool) {
		resp, err := client.Get(base + "/health")
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		var h struct {
			ModelVersion string `json:"model_version"`
			ModelLoaded  bool   `json:"model_loaded"`
			ModelSource  string `json:"model_source"`
		}
		if json.NewDecoder(resp.Body).Decode(&h) != nil {
			return "", false
		}
		// /health names the kind of source, never the bucket and key.
		return h.ModelVersion, h.ModelLoaded && h.ModelSource == "MODEL_URI (s3)"
	}
	waitHealth := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if v, ok := health(); ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				v, _ := health()
				t.Fatalf("/health model_version %q, want %q", v, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitHealth(vs[0].Version)

	var (
		wg       sync.WaitGroup
		stop     atomic.Bool
		total    atomic.Int64
		failed   atomic.Int64
		mixed    atomic.Int64
		firstBad atomic.Pointer[string]
		seen     sync.Map
	)
	bad := func(counter *atomic.Int64, format string, a ...any) {
		counter.Add(1)
		s := fmt.Sprintf(format, a...)
		firstBad.CompareAndSwap(nil, &s)
	}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				name := e2eNames[(g+i)%len(e2eNames)]
				body, _ := json.Marshal(map[string]string{"mask_name": name})
				resp, err := client.Post(base+"/predict", "application/json", bytes.NewReader(body))
				total.Add(1)
				if err != nil {
					bad(&failed, "POST /predict: %v", err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var p struct {
					ModelVersion string              `json:"model_version"`
					Breakdown    []map[string]string `json:"breakdown"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &p) != nil {
					bad(&failed, "%q: %d %s", name, resp.StatusCode, b)
					continue
				}
				var labels []string
				for _, kv := range p.Breakdown {
					for _, l := range kv {
						labels = append(labels, l)
					}
				}
				v, ok := byVersion[p.ModelVersion]
				if !ok || !slices.Equal(v.Labels[name], labels) {
					bad(&mixed, "%q: model_version %s labels %v", name, p.ModelVersion, labels)
					continue
				}
				seen.Store(p.ModelVersion, true)
			}
		}(g)
	}

	start := time.Now()
	for k, i := range []int{1, 2, 3, 0, 2, 1} {
		push(vs[i].Data)
		if k%2 == 1 {
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		waitHealth(vs[i].Version)
		for target := total.Load() + 300; total.Load() < target; {
			time.Sleep(time.Millisecond)
		}
	}
	// A corrupt upload: rejected, the old model keeps serving.
	serving := vs[1].Version
	push(vs[2].Data[:len(vs[2].Data)/3])
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "new model rejected; the old model keeps serving") {
		if time.Now().After(deadline) {
			t.Fatal("corrupt model not rejected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for target := total.Load() + 300; total.Load() < target; {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	if v, _ := health(); v != serving {
		t.Errorf("after the rejected model /health says %q, want %q", v, serving)
	}
	if s := firstBad.Load(); s != nil {
		t.Errorf("first bad answer: %s", *s)
	}
	if failed.Load() != 0 || mixed.Load() != 0 {
		t.Fatalf("%d failed and %d mixed answers of %d", failed.Load(), mixed.Load(), total.Load())
	}
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n != len(vs) {
		t.Errorf("answers came from %d model versions, want %d", n, len(vs))
	}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`maskpredictor_model_reloads_total{outcome="rejected"} 1`, `maskpredictor_model_reloads_total{outcome="reloaded"} 6`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	t.Logf("%d /predict answers over %v, 0 failed, 0 mixed; 6 reloads (3 after SIGHUP), 1 rejection", total.Load(), elapsed.Round(time.Millisecond))
}
