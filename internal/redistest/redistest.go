// Package redistest gives tests a Redis of their own: a private redis-server
// on a free port in a temporary directory, stopped when the test ends. With
// TEST_REDIS_URL set, that server is used instead and flushed first (it must
// be a Redis you can throw away; REDIS_URL is deliberately not used, so a
// developer's application Redis is never flushed by a test run).
//
// Tests that need a server of their own (restart, kill) ask for it with
// Options{Private: true} and are skipped when only TEST_REDIS_URL is available.
package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a test server.
type Options struct {
	// Persistent turns on the append-only file (fsync every second) so data
	// survives Restart and Kill+Start, as a production Redis would.
	Persistent bool
	// Private requires a server this test owns (no TEST_REDIS_URL).
	Private bool
	// TLS serves only TLS (rediss://) with a fresh self-signed certificate,
	// as Heroku Redis does. Client trusts it; other clients must skip
	// verification or trust CertFile.
	TLS bool
	// Args are extra redis-server arguments ("--maxmemory", "10mb", …).
	Args []string
	// Password, when set, is the server's requirepass; URL and Client use it.
	Password string
}

// Server is a running test Redis.
type Server struct {
	tb   testing.TB
	opts Options
	// Addr is host:port, URL is redis://Addr/0.
	Addr string
	URL  string
	// Dir is the server's working directory ("" for TEST_REDIS_URL).
	Dir string
	// CertFile is the server's self-signed certificate (PEM) with TLS.
	CertFile string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// conf, when set, is a sentinel's configuration file: the server runs
	// as `redis-server conf --sentinel` (sentinel.go).
	conf string
}

// Start returns a clean Redis for tb, stopped at the end of the test.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if url := os.Getenv("TEST_REDIS_URL"); url != "" {
		if opts.Private {
			tb.Skip("needs a private redis-server; TEST_REDIS_URL is set")
		}
		o, err := redis.ParseURL(url)
		if err != nil {
			tb.Fatalf("TEST_REDIS_URL: %v", err)
		}
		s := &Server{tb: tb, opts: opts, Addr: o.Addr, URL: url}
		c := s.Client()
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			tb.Fatalf("flushing TEST_REDIS_URL: %v", err)
		}
		return s
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server not installed (set TEST_REDIS_URL to use another Redis)")
	}
	s := &Server{tb: tb, opts: opts, Dir: tb.TempDir()}
	if opts.TLS {
		if err := s.writeCert(); err != nil {
			tb.Fatal(err)
		}
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = s.URLWith(opts.Password, 0)
		if lastErr = s.start(bin); lastErr == nil {
			tb.Cleanup(s.stop)
			return s
		}
	}
	tb.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) args() []string {
	if s.conf != "" {
		return []string{s.conf, "--sentinel"}
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	a := []string{"--port", port}
	if s.opts.TLS {
		a = []string{"--port", "0", "--tls-port", port, "--tls-cert-file", s.CertFile,
			"--tls-key-file", filepath.Join(s.Dir, "key.pem"), "--tls-auth-clients", "no"}
	}
	a = append(a,
		"--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
		"--maxmemory-policy", "noeviction",
	)
	if s.opts.Password != "" {
		a = append(a, "--requirepass", s.opts.Password)
	}
	if s.opts.Persistent {
		a = append(a, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		a = append(a, "--appendonly", "no")
	}
	return append(a, s.opts.Args...)
}

func (s *Server) start(bin string) error {
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.opts.Password, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, TLSConfig: s.tlsConfig()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start: %s", strings.TrimSpace(string(log)))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		var reply redis.Error
		if err == nil || errors.As(err, &reply) {
			return nil // it answers (NOAUTH too: a password is set with Args)
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server did not answer within 10s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URLWith is the server's URL with another password ("" for none) and
// database number, for tests of a client configured wrongly.
func (s *Server) URLWith(password string, db int) string {
	scheme := "redis://"
	if s.opts.TLS {
		scheme = "rediss://"
	}
	auth := ""
	if password != "" {
		auth = ":" + url.QueryEscape(password) + "@"
	}
	return scheme + auth + s.Addr + "/" + strconv.Itoa(db)
}

// Client returns a new client for the server, closed at the end of the test.
func (s *Server) Client() *redis.Client {
	o, err := redis.ParseURL(s.URL)
	if err != nil {
		s.tb.Fatalf("parsing %s: %v", s.URL, err)
	}
	if o.TLSConfig != nil {
		o.TLSConfig = s.tlsConfig()
	}
	c := redis.NewClient(o)
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// tlsConfig trusts the server's certificate (nil without TLS).
func (s *Server) tlsConfig() *tls.Config {
	if s.CertFile == "" {
		return nil
	}
	certPEM, err := os.ReadFile(s.CertFile)
	if err != nil {
		s.tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func (s *Server) writeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "redistest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	s.CertFile = filepath.Join(s.Dir, "cert.pem")
	if err := os.WriteFile(s.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
}

// Stop shuts the server down (SIGTERM; Redis saves the AOF) and waits.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Pause stops the server process (SIGSTOP) without ending it: it answers
// nothing, and a replica then falls behind its primary, whose writes pile
// up in its output buffer. Resume continues it (SIGCONT).
func (s *Server) Pause()  { s.send(syscall.SIGSTOP) }
func (s *Server) Resume() { s.send(syscall.SIGCONT) }

func (s *Server) send(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// StartAgain starts a stopped server on the same port and directory.
func (s *Server) StartAgain() {
	s.tb.Helper()
	if s.Dir == "" {
		s.tb.Fatal("StartAgain needs a private server")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatal(err)
	}
	// The port may be in TIME_WAIT or briefly taken; retry for a while.
	var lastErr error
	for i := 0; i < 50; i++ {
		if lastErr = s.start(bin); lastErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("restarting redis-server: %v", lastErr)
}

// Restart is Stop then StartAgain.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.StartAgain()
}

func (s *Server) stop() {
	s.Kill()
}

// Running reports whether the private server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return s.Dir == ""
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// ErrNoRuby is returned by RubyAvailable when ruby or the sidekiq gem is missing.
var ErrNoRuby = errors.New("ruby with the sidekiq gem is not available")

// RequireRubySidekiq skips tb unless `ruby -e 'require "sidekiq"'` works.
func RequireRubySidekiq(tb testing.TB) string {
	tb.Helper()
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		tb.Skip(ErrNoRuby.Error())
	}
	if out, err := exec.Command(ruby, "-e", `require "sidekiq"; require "sidekiq/api"`).CombinedOutput(); err != nil {
		tb.Skipf("%v: %s", ErrNoRuby, out)
	}
	return ruby
}

// Stats are counters from INFO stats, errorstats and commandstats.
type Stats struct {
	// Connections is total_connections_received: every connection accepted,
	// also those refused at AUTH.
	Connections int64
	// Commands is total_commands_processed (commands run by scripts count).
	Commands int64
	// ErrorReplies is total_error_replies: every error reply, also those
	// to commands refused before running (OOM, NOAUTH).
	ErrorReplies int64
	// Errors counts error replies by prefix (errorstat_OOM → "OOM").
	Errors map[string]int64
	// Calls, Failed and Rejected count per command (cmdstat_evalsha →
	// "evalsha"): calls, failed_calls (Redis 7+) and rejected_calls (7+).
	Calls, Failed, Rejected map[string]int64
}

// Sub is s − before, per counter.
func (s Stats) Sub(before Stats) Stats {
	d := Stats{
		Connections: s.Connections - before.Connections, Commands: s.Commands - before.Commands,
		ErrorReplies: s.ErrorReplies - before.ErrorReplies,
		Errors:       map[string]int64{}, Calls: map[string]int64{}, Failed: map[string]int64{}, Rejected: map[string]int64{},
	}
	for _, m := range []struct{ out, now, was map[string]int64 }{
		{d.Errors, s.Errors, before.Errors}, {d.Calls, s.Calls, before.Calls},
		{d.Failed, s.Failed, before.Failed}, {d.Rejected, s.Rejected, before.Rejected},
	} {
		for k, v := range m.now {
			if v -= m.was[k]; v != 0 {
				m.out[k] = v
			}
		}
	}
	return d
}

// Stats reads the server's counters (with an authenticated client of its own).
func (s *Server) Stats(ctx context.Context) Stats {
	s.tb.Helper()
	c := s.Client()
	info, err := c.Info(ctx, "stats", "errorstats", "commandstats").Result()
	if err != nil {
		s.tb.Fatalf("INFO: %v", err)
	}
	return ParseStats(info)
}

// ParseStats reads Stats from the text of INFO.
func ParseStats(info string) Stats {
	st := Stats{Errors: map[string]int64{}, Calls: map[string]int64{}, Failed: map[string]int64{}, Rejected: map[string]int64{}}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "total_connections_received":
			st.Connections, _ = strconv.ParseInt(v, 10, 64)
		case k == "total_commands_processed":
			st.Commands, _ = strconv.ParseInt(v, 10, 64)
		case k == "total_error_replies":
			st.ErrorReplies, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "errorstat_"):
			st.Errors[strings.TrimPrefix(k, "errorstat_")] = field(v, "count")
		case strings.HasPrefix(k, "cmdstat_"):
			name := strings.TrimPrefix(k, "cmdstat_")
			st.Calls[name] = field(v, "calls")
			st.Failed[name] = field(v, "failed_calls")
			st.Rejected[name] = field(v, "rejected_calls")
		}
	}
	return st
}

// field reads "name=value" out of "a=1,b=2".
func field(v, name string) int64 {
	for _, kv := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			n, _ := strconv.ParseInt(val, 10, 64)
			return n
		}
	}
	return 0
}

// Fill sets maxmemory to bytes (with noeviction, as every test server has)
// and writes filler keys ("redistest:fill:<n>") until Redis refuses writes
// with OOM. CONFIG SET maxmemory 0 ends it.
func (s *Server) Fill(ctx context.Context, bytes int64) {
	s.tb.Helper()
	c := s.Client()
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(bytes, 10)).Err(); err != nil {
		s.tb.Fatalf("CONFIG SET maxmemory: %v", err)
	}
	// 1,000 keys per call: a script sees OOM only from the next call on.
	const fill = `for i = 1, 1000 do
  local ok = redis.pcall("SET", "redistest:fill:" .. ARGV[1] .. ":" .. i, string.rep("x", 1000))
  if type(ok) == "table" and ok.err then return i end
end
return -1`
	for round := 0; round < 10000; round++ {
		n, err := c.Eval(ctx, fill, nil, round).Int()
		if err != nil && strings.HasPrefix(err.Error(), "OOM") {
			return
		}
		if err != nil {
			s.tb.Fatalf("filling Redis: %v", err)
		}
		if n > 0 {
			return
		}
	}
	s.tb.Fatalf("Redis not full after 10 M filler keys (maxmemory %d)", bytes)
}
