package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// testTLSListener serves TLS on 127.0.0.1 with a fresh self-signed
// certificate for ips and dnsNames; it completes each handshake and closes
// the connection. It returns its address and the certificate.
func testTLSListener(t *testing.T, ips []net.IP, dnsNames []string) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "maskpredictor test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  ips,
		DNSNames:     dnsNames,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Read(make([]byte, 1)) // until the client closes
			}()
		}
	}()
	return ln.Addr().String(), cert
}

// TestSentinelTLSVerifiesEachNode (review of issue 15): with REDIS_SENTINELS
// and rediss:// every node the failover client dials (a sentinel, the
// primary, a replica) is verified against the host of its own address, not
// against the URL's host, which Sentinel ignores (go-redis' ParseURL makes
// it the TLS ServerName).
func TestSentinelTLSVerifiesEachNode(t *testing.T) {
	// Two nodes: one with a certificate for its IP address only (as
	// Sentinel announces nodes), one for the name localhost only.
	node, cert := testTLSListener(t, []net.IP{net.ParseIP("127.0.0.1")}, nil)
	named, namedCert := testTLSListener(t, nil, []string{"localhost"})
	_, namedPort, _ := net.SplitHostPort(named)
	env := map[string]string{"REDIS_TLS_URL": "rediss://:pw@ignored:6379/0", "REDIS_SENTINELS": node,
		"REDIS_SENTINEL_MASTER": "mymaster"}
	rc := redisConfigFromEnv(t, env)
	fo := rc.failoverOptions(rc.opt)
	if fo.TLSConfig == nil || fo.Dialer == nil {
		t.Fatalf("failover options: TLS %v, dialer %v", fo.TLSConfig != nil, fo.Dialer != nil)
	}
	if fo.TLSConfig.ServerName != "" {
		t.Errorf("failover options: ServerName %q (the URL's ignored host), want none", fo.TLSConfig.ServerName)
	}
	if fo.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", fo.TLSConfig.MinVersion)
	}
	// The test's certificates, as CAs the system would trust.
	fo.TLSConfig.RootCAs = x509.NewCertPool()
	fo.TLSConfig.RootCAs.AddCert(cert)
	fo.TLSConfig.RootCAs.AddCert(namedCert)
	ctx := context.Background()
	for _, tc := range []struct{ addr, sni string }{
		{node, ""}, // an IP address: verified against the certificate's IP, no SNI
		{net.JoinHostPort("localhost", namedPort), "localhost"}, // a host name (sentinel resolve-hostnames)
	} {
		c, err := fo.Dialer(ctx, "tcp", tc.addr)
		if err != nil {
			t.Errorf("dialing %s: %v", tc.addr, err)
			continue
		}
		if got := c.(*tls.Conn).ConnectionState().ServerName; got != tc.sni {
			t.Errorf("dialing %s: sent the name %q, want %q", tc.addr, got, tc.sni)
		}
		_ = c.Close()
	}
	if fo.TLSConfig.ServerName != "" {
		t.Errorf("dialing set ServerName %q on the shared configuration", fo.TLSConfig.ServerName)
	}

	// Verification still applies: a node whose certificate names another
	// host is refused.
	other, otherCert := testTLSListener(t, nil, []string{"redis.example"})
	fo.TLSConfig.RootCAs.AddCert(otherCert)
	if c, err := fo.Dialer(ctx, "tcp", other); err == nil {
		_ = c.Close()
		t.Errorf("dialing %s, whose certificate is for redis.example: no error", other)
	} else if !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("dialing %s: %v, want a certificate error", other, err)
	}

	// The failover client itself is built with them.
	rdb := rc.client(2)
	defer rdb.Close()
	if o := rdb.(*redis.Client).Options(); o.TLSConfig == nil || o.TLSConfig.ServerName != "" {
		t.Errorf("failover client's TLS configuration: %v, ServerName %q", o.TLSConfig != nil, o.TLSConfig.ServerName)
	}

	// Without Sentinel the URL's host is the server, and its name is verified.
	plainEnv := map[string]string{"REDIS_TLS_URL": "rediss://localhost:" + namedPort + "/0"}
	var pf redisFlags
	pc, err := pf.config(IO{Env: func(k string) string { return plainEnv[k] }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if pc.opt.TLSConfig.ServerName != "localhost" {
		t.Errorf("plain: ServerName %q, want the URL's host", pc.opt.TLSConfig.ServerName)
	}
	pc.opt.TLSConfig.RootCAs = x509.NewCertPool()
	pc.opt.TLSConfig.RootCAs.AddCert(namedCert)
	c, err := pc.opt.Dialer(ctx, "tcp", "127.0.0.1:"+namedPort)
	if err != nil {
		t.Fatalf("plain: %v", err)
	}
	if got := c.(*tls.Conn).ConnectionState().ServerName; got != "localhost" {
		t.Errorf("plain: verified as %q, want the URL's host", got)
	}
	_ = c.Close()
}

// TestSentinelTLSEndToEnd: a TLS primary (certificate for 127.0.0.1) and a
// TLS sentinel (the same certificate) on loopback; the runbook's URL
// (rediss://…@ignored:6379/0) with REDIS_SENTINELS: the failover client
// asks the sentinel over TLS and writes to the primary over TLS, each
// verified against its own address.
func TestSentinelTLSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server; skipped with -short")
	}
	primary := redistest.Start(t, redistest.Options{Private: true, TLS: true})
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	port := freeTCPPort(t)
	pHost, pPort, _ := net.SplitHostPort(primary.Addr)
	key := filepath.Join(primary.Dir, "key.pem")
	conf := strings.Join([]string{
		"port 0", "tls-port " + strconv.Itoa(port), "bind 127.0.0.1", "daemonize no", "dir " + dir,
		"logfile " + filepath.Join(dir, "sentinel.log"),
		"tls-cert-file " + primary.CertFile, "tls-key-file " + key, "tls-ca-cert-file " + primary.CertFile,
		"tls-auth-clients no", "tls-replication yes",
		"sentinel monitor mymaster " + pHost + " " + pPort + " 1",
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, filepath.Join(dir, "sentinel.conf"), "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	sentinel := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// Listening first: a refused dial leaves go-redis redialling in the
	// background for a second (goleak).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", sentinel); err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sentinel not listening after 10 s")
		}
	}
	env := map[string]string{"REDIS_TLS_URL": "rediss://ignored:6379/0", "REDIS_SENTINELS": sentinel,
		"REDIS_SENTINEL_MASTER": "mymaster"}
	rc := redisConfigFromEnv(t, env)
	certPEM, err := os.ReadFile(primary.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	rc.opt.TLSConfig.RootCAs = x509.NewCertPool() // the test's certificate, as a CA the system would trust
	rc.opt.TLSConfig.RootCAs.AppendCertsFromPEM(certPEM)
	rdb := rc.client(2)
	defer rdb.Close()
	ctx := context.Background()
	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if lastErr = rdb.Set(ctx, "tls-through-sentinel", "1", 0).Err(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
		t.Fatalf("writing through the TLS sentinel: %v\nsentinel log:\n%s", lastErr, lastLines(string(log), 10))
	}
	if v := primary.Client().Get(ctx, "tls-through-sentinel").Val(); v != "1" {
		t.Errorf("the primary has %q", v)
	}
	if rc.Primary() != primary.Addr {
		t.Errorf("primary %q, want %s", rc.Primary(), primary.Addr)
	}
}

// redisConfigFromEnv is the Redis configuration a command builds from env.
func redisConfigFromEnv(t *testing.T, env map[string]string) *redisConfig {
	t.Helper()
	var rf redisFlags
	rc, err := rf.config(IO{Env: func(k string) string { return env[k] }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return rc
}
