package admin

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of the login throttle.
const (
	DefaultMaxFailures   = 10
	DefaultFailureWindow = time.Minute
	// maxTracked bounds the clients remembered: beyond it ended windows, or
	// else an arbitrary one, are forgotten (a flood from many addresses
	// costs bounded memory and time).
	maxTracked = 10_000
)

// throttle counts refused logins per client in fixed windows: after max
// failures within window of the first, the client is refused (429) until
// the window ends, without its credentials being checked. Safe for
// concurrent use.
type throttle struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	clients map[string]*failures
	swept   time.Time
}

type failures struct {
	start time.Time // of the window
	n     int
}

func newThrottle(max int, window time.Duration, now func() time.Time) *throttle {
	return &throttle{max: max, window: window, now: now, clients: make(map[string]*failures)}
}

// blocked reports whether client must wait, and how long.
func (t *throttle) blocked(client string) (bool, time.Duration) {
	if t == nil {
		return false, 0
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.clients[client]
	if !ok {
		return false, 0
	}
	end := f.start.Add(t.window)
	if !now.Before(end) {
		delete(t.clients, client)
		return false, 0
	}
	return f.n >= t.max, end.Sub(now)
}

// fail counts a refused login of client and returns its failures in the
// current window (1: the first of a window).
func (t *throttle) fail(client string) int {
	if t == nil {
		return 0
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.clients[client]
	if ok && !now.Before(f.start.Add(t.window)) {
		ok = false
	}
	if !ok {
		if len(t.clients) >= maxTracked {
			t.evict(now)
		}
		f = &failures{start: now}
		t.clients[client] = f
	}
	f.n++
	return f.n
}

// succeeded forgets client's failures: a mistyped password does not count
// against the next session.
func (t *throttle) succeeded(client string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.clients, client)
	t.mu.Unlock()
}

// evict makes room for one client (t.mu held): it drops the ended windows
// (at most once a second: a sweep costs a pass over the map), and when
// none has ended an arbitrary client's window.
func (t *throttle) evict(now time.Time) {
	if now.Sub(t.swept) >= time.Second {
		t.swept = now
		for c, f := range t.clients {
			if !now.Before(f.start.Add(t.window)) {
				delete(t.clients, c)
			}
		}
	}
	if len(t.clients) >= maxTracked {
		for c := range t.clients {
			delete(t.clients, c)
			break
		}
	}
}

// ClientIP is the address a request came from: the connection's peer, or
// with header set (e.g. "X-Forwarded-For" behind Heroku's router or a load
// balancer) the last address in that header, which the proxy in front
// appended. Only set header when every request comes through such a proxy:
// a client can write the header itself.
func ClientIP(r *http.Request, header string) string {
	if header != "" {
		if vs := r.Header.Values(header); len(vs) > 0 {
			last := vs[len(vs)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := strings.TrimSpace(last); ip != "" {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
