package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/internal/redistest"
)

// TestSentinelFailover: the helper's sentinels promote the replica when the
// primary is SIGKILLed.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five redis-server processes; skipped with -short")
	}
	ss := redistest.StartSentinel(t, redistest.SentinelOptions{})
	ctx := context.Background()
	old, err := ss.Primary(ctx)
	if err != nil || old != ss.Nodes[0].Addr {
		t.Fatalf("primary %q (%v), want %s", old, err, ss.Nodes[0].Addr)
	}
	if r := ss.Role(ss.Nodes[1]); r != "slave" {
		t.Fatalf("replica's role %q", r)
	}
	start := time.Now()
	ss.Nodes[0].Kill()
	n := ss.WaitFailover(old, 30*time.Second)
	t.Logf("failover to %s after %v", n.Addr, time.Since(start).Round(time.Millisecond))
	if n != ss.Nodes[1] {
		t.Errorf("new primary %s, want the replica %s", n.Addr, ss.Nodes[1].Addr)
	}
	// The old primary, back, becomes a replica of the new one.
	ss.Nodes[0].StartAgain()
	deadline := time.Now().Add(20 * time.Second)
	for ss.Role(ss.Nodes[0]) != "slave" {
		if time.Now().After(deadline) {
			t.Fatalf("the old primary is still %q 20 s after its restart", ss.Role(ss.Nodes[0]))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("old primary a replica again %v after the kill", time.Since(start).Round(time.Millisecond))
}
