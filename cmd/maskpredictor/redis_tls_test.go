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
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
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
	var rf redisFlags
	rc, err := rf.config(IO{Env: func(k string) string { return env[k] }}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
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
