package httpapi

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestHealthRedisPrimary (issue 15): /health names the primary by its
// replication id (no address) and says its role; a process connected to a
// replica is degraded.
func TestHealthRedisPrimary(t *testing.T) {
	primary := redistest.Start(t, redistest.Options{Private: true})
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.Start(t, redistest.Options{Private: true, Args: []string{"--replicaof", host, port}})
	ctx := context.Background()
	// A primary takes a new replication id when its first replica syncs
	// (Redis creates the backlog then): read it once the replica is online.
	var info string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		info, err = primary.Client().Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "state=online") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not online after 10 s: %v\n%s", err, info)
		}
	}
	r := ParseReplication(info)
	if r.Role != "master" || len(r.ReplID) != 40 {
		t.Fatalf("INFO replication of the primary: %+v", r)
	}

	ts := newTestServer(t, testOpts{rdb: primary.Client()})
	resp := do(t, ts, "GET", "/health", "")
	m := resp.json(t)
	if m["status"] != "ok" || m["redis_primary"] != r.ReplID[:12] || m["redis_role"] != "master" {
		t.Errorf("/health on the primary: %s, want redis_primary %s", resp.body, r.ReplID[:12])
	}
	if strings.Contains(string(resp.body), port) || strings.Contains(string(resp.body), "127.0.0.1") {
		t.Errorf("/health names an address: %s", resp.body)
	}

	// The replica shares its primary's replication id, once in sync.
	rts := newTestServer(t, testOpts{rdb: replica.Client()})
	var rm map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rm = do(t, rts, "GET", "/health", "").json(t)
		if rm["redis_primary"] == r.ReplID[:12] || time.Now().After(deadline) {
			break
		}
	}
	if rm["status"] != "degraded" || rm["redis_role"] != "slave" || rm["redis"] != "ok" ||
		rm["redis_error"] != "redis: connected to a replica (read-only)" || rm["redis_primary"] != r.ReplID[:12] {
		t.Errorf("/health on a replica: %v", rm)
	}
}
