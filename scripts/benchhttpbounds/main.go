// Command benchhttpbounds measures what the HTTP bounds of issue 11 buy,
// against the built binary (`maskpredictor serve`, no Redis). Run it through
// scripts/bench-http-bounds.
//
//  1. latency: closed-loop clients send one short name each to /predict
//     (the other clients of the red-team report), first alone, then while
//     flood clients send /predict_batch requests of 1,000 distinct
//     ~980-character names (a 1 MB body each). Once with the default batch
//     bound, once with --batch-names 1000000 (no bound: the old server).
//  2. conns: N keep-alive connections each send one GET /health and stay
//     idle; then the server's RSS (VmRSS) and a fresh client's /health
//     latency. Once with the default --max-conns, once with --max-conns
//     1000000 (no cap). N is limited by this process' open-files limit.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	bin      = flag.String("bin", "", "maskpredictor binary (required)")
	mode     = flag.String("mode", "all", "latency, conns or all")
	duration = flag.Duration("d", 5*time.Second, "length of each latency measurement")
	singles  = flag.Int("c", 4, "closed-loop /predict clients")
	flooders = flag.Int("flood", 4, "/predict_batch flood clients")
	nconns   = flag.Int("conns", 20000, "idle connections (capped by the open-files limit)")
	retry    = flag.Duration("retry", 10*time.Millisecond, "how long a flood client waits after a 503 (Retry-After says 1 s)")
)

func main() {
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "benchhttpbounds: -bin is required")
		os.Exit(2)
	}
	var err error
	if *mode == "latency" || *mode == "all" {
		err = latency()
	}
	if err == nil && (*mode == "conns" || *mode == "all") {
		err = conns()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchhttpbounds:", err)
		os.Exit(1)
	}
}

// server is a running `maskpredictor serve`.
type server struct {
	cmd  *exec.Cmd
	base string
	addr string
}

func start(args ...string) (*server, error) {
	cmd := exec.Command(*bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "LOG_FORMAT=json", "LOG_LEVEL=info", "REDIS_URL=", "REDIS_TLS_URL=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", *bin, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "http listening" {
				addr <- line.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		return &server{cmd: cmd, base: "http://" + a, addr: a}, nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("server did not listen within 30 s")
	}
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func (s *server) rssKiB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

func (s *server) metric(name string) string {
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "-"
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(float64(len(ds)-1)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// measureSingles runs the closed-loop /predict clients for d.
func measureSingles(s *server, d time.Duration) (rps float64, p50, p99 time.Duration, errs int64) {
	body := `{"mask_name":"3M Aura 9205+ N95"}`
	var mu sync.Mutex
	var all []time.Duration
	var nerr atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < *singles; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			var mine []time.Duration
			for time.Now().Before(end) {
				t0 := time.Now()
				resp, err := client.Post(s.base+"/predict", "application/json", strings.NewReader(body))
				if err != nil {
					nerr.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					nerr.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(len(all)) / d.Seconds(), pct(all, 50), pct(all, 99), nerr.Load()
}

func longName(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Flood%04d", i%10000)
	for j := 1; j < 98; j++ {
		fmt.Fprintf(&b, " T%02dx%05d", j, i/10000+j)
	}
	return b.String()
}

func latency() error {
	bodies := make([]string, *flooders)
	for f := range bodies {
		names := make([]string, 1000)
		for i := range names {
			names[i] = longName(f*1000 + i)
		}
		b, _ := json.Marshal(map[string][]string{"mask_names": names})
		bodies[f] = string(b)
	}
	fmt.Printf("## /predict under a /predict_batch flood\n\n%d closed-loop /predict clients (one short name), %v per measurement; "+
		"%d flood clients, 1,000 distinct ~980-character names per batch (1 MB bodies), retrying %v after a 503.\n\n",
		*singles, *duration, *flooders, *retry)
	fmt.Println("| server | /predict alone: req/s, p50, p99 (ms) | under the flood: req/s, p50, p99 (ms) | batches 200 / 503 |")
	fmt.Println("| --- | --- | --- | --- |")
	for _, c := range []struct {
		name string
		args []string
	}{{"default batch bound", nil}, {"no bound (--batch-names 1000000)", []string{"--batch-names", "1000000"}}} {
		s, err := start(c.args...)
		if err != nil {
			return err
		}
		measureSingles(s, time.Second) // warm-up
		rps0, p500, p990, _ := measureSingles(s, *duration)
		ctx, cancel := context.WithCancel(context.Background())
		var ok, busy atomic.Int64
		var wg sync.WaitGroup
		for f := 0; f < *flooders; f++ {
			wg.Add(1)
			go func(body string) {
				defer wg.Done()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer client.CloseIdleConnections()
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "POST", s.base+"/predict_batch", strings.NewReader(body))
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					} else {
						busy.Add(1)
						time.Sleep(*retry)
					}
				}
			}(bodies[f])
		}
		time.Sleep(time.Second) // the flood is on
		rps1, p501, p991, errs := measureSingles(s, *duration)
		cancel()
		wg.Wait()
		s.stop()
		fmt.Printf("| %s | %.0f, %s, %s | %.0f (%.0f %%), %s, %s%s | %d / %d |\n", c.name, rps0, ms(p500), ms(p990),
			rps1, 100*rps1/rps0, ms(p501), ms(p991), errNote(errs), ok.Load(), busy.Load())
	}
	fmt.Println()
	return nil
}

func errNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d errors)", n)
}

func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return int(rl.Cur)
}

func conns() error {
	n := min(*nconns, fdLimit()-100)
	fmt.Printf("## %d idle keep-alive connections\n\nEach sends one GET /health, reads the answer and stays open; then the server's RSS and a new client's GET /health.\n\n", n)
	fmt.Println("| server | RSS before | RSS with the connections | open on the server | idle closed / refused | new client's /health |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, c := range []struct {
		name string
		args []string
	}{{"default --max-conns", nil}, {"no cap (--max-conns 1000000)", []string{"--max-conns", "1000000"}}} {
		s, err := start(c.args...)
		if err != nil {
			return err
		}
		before := s.rssKiB()
		held := make([]net.Conn, n)
		var failed atomic.Int64
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
					if err != nil {
						failed.Add(1)
						continue
					}
					held[i] = c
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
						failed.Add(1)
						continue
					}
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					_ = c.SetDeadline(time.Time{})
				}
			}()
		}
		wg.Wait()
		time.Sleep(500 * time.Millisecond)
		after := s.rssKiB()
		var healthNote string
		t0 := time.Now()
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(s.base + "/health")
		if err != nil {
			healthNote = "failed: " + err.Error()
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			healthNote = fmt.Sprintf("%d in %s ms", resp.StatusCode, ms(time.Since(t0)))
		}
		open := s.metric("maskpredictor_http_open_connections")
		closed := s.metric("maskpredictor_http_idle_connections_closed_total")
		refused := s.metric("maskpredictor_http_connections_refused_total")
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
		s.stop()
		fmt.Printf("| %s | %.1f MiB | %.1f MiB | %s | %s / %s | %s%s |\n", c.name, float64(before)/1024, float64(after)/1024,
			open, closed, refused, healthNote, failedNote(failed.Load()))
	}
	fmt.Println()
	return nil
}

func failedNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d client connections failed)", n)
}
