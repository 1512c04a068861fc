package admin

import (
	"strings"
	"testing"
)

// TestOverviewRedisPrimary (issue 15): the overview names the primary this
// process writes to, where it comes from, and what the node says it is.
func TestOverviewRedisPrimary(t *testing.T) {
	f := newFixture(t, Config{User: "ops", Password: "pw",
		RedisPrimary: func() string { return "10.9.8.7:6380" }, RedisMode: `Sentinel, master "mymaster" via 10.0.0.1:26379`})
	code, _, body := f.get(t, "GET", "/admin/", "Authorization", basic("ops", "pw"))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	i := strings.Index(body, `id="redis-primary"`)
	if i < 0 {
		t.Fatalf("no redis-primary cell:\n%s", body)
	}
	cell := body[i:min(len(body), i+600)]
	for _, want := range []string{"10.9.8.7:6380", "primary", "replica(s) connected", "mymaster", "10.0.0.1:26379"} {
		if !strings.Contains(cell, want) {
			t.Errorf("redis-primary cell lacks %q: %s", want, cell)
		}
	}
}
