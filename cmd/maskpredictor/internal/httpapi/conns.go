package httpapi

import (
	"bytes"
	"container/list"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of ConnLimitConfig.
const (
	DefaultMaxConns  = 1024
	DefaultConnWait  = 100 * time.Millisecond
	defaultBurstGap  = 10 * time.Second
	refuseWriteLimit = 50 * time.Millisecond
)

// ConnLimitConfig configures a ConnLimiter.
type ConnLimitConfig struct {
	// Max is the most connections open at once. Default DefaultMaxConns,
	// or half the process' file descriptor limit when that is lower
	// (DefaultMaxConnsFor).
	Max int
	// Wait is how long a new connection waits for a slot when every open
	// connection is busy (none idle to close). Default 100 ms.
	Wait time.Duration
	// Metrics, when set, gets the open, refused and closed-idle counts.
	Metrics *Metrics
	// Logger gets one warning per burst of connections over the limit (a
	// burst ends after 10 s without one). Default: no-op.
	Logger *zap.Logger
	// MaxHeaderBytes is the server's limit, named in the 431 answer (0:
	// not named).
	MaxHeaderBytes int
}

// DefaultMaxConnsFor is the default connection cap for a process whose
// file descriptor limit is nofile (0: unknown): DefaultMaxConns, or half
// of nofile when that is lower (the rest is for Redis, files and the
// listener), and at least 16.
func DefaultMaxConnsFor(nofile uint64) int {
	if nofile == 0 || nofile/2 >= DefaultMaxConns {
		return DefaultMaxConns
	}
	return max(16, int(nofile/2))
}

// ConnLimiter caps the connections of an http.Server and makes the
// answers net/http writes by itself JSON. Install both halves:
//
//	srv.ConnState = l.ConnState
//	srv.Serve(l.Listener(ln))
//
// At the cap, a new connection closes the connection that has been idle
// (keep-alive, or accepted and silent) the longest; when none is idle it
// waits up to Wait for one to close, and is otherwise answered 503 with a
// JSON body and closed. The first such event of a burst is logged as a
// warning; all are counted in the metrics.
//
// net/http answers some malformed requests itself, before any handler, in
// text/plain: 431 (headers over MaxHeaderBytes), 400 (unparsable request
// line or headers), 501 (unknown transfer coding), 505. The connections
// rewrite those answers, which net/http writes straight to the connection
// with fixed headers, into the same answers with a JSON {"error":…} body.
type ConnLimiter struct {
	cfg     ConnLimitConfig
	log     *zap.Logger
	max     int
	header  string // 431 message
	refused []byte // 503 answer
	metrics *connMetrics

	mu        sync.Mutex
	open      int
	idle      list.List // of *limitedConn, longest idle first
	saturated bool      // a wait for a slot timed out, and none freed since
	freed     chan struct{}
	lastEvent time.Time
}

// NewConnLimiter returns a limiter for cfg.
func NewConnLimiter(cfg ConnLimitConfig) *ConnLimiter {
	if cfg.Max <= 0 {
		cfg.Max = DefaultMaxConnsFor(fdLimit())
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultConnWait
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	l := &ConnLimiter{cfg: cfg, log: cfg.Logger, max: cfg.Max, freed: make(chan struct{}, 1)}
	l.refused = refusedResponse()
	l.header = "request headers too large"
	if cfg.MaxHeaderBytes > 0 {
		l.header = fmt.Sprintf("request headers too large (limit %d bytes)", cfg.MaxHeaderBytes)
	}
	if cfg.Metrics != nil {
		l.metrics = cfg.Metrics.conns
		l.metrics.setSource(l)
	}
	return l
}

// Max is the connection cap.
func (l *ConnLimiter) Max() int { return l.max }

// Open is the number of connections open now.
func (l *ConnLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Listener wraps ln: its connections count against the cap.
func (l *ConnLimiter) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

// ConnState tracks which connections are idle; set it as the
// http.Server's ConnState (it calls the previous hook, if any, itself not).
func (l *ConnLimiter) ConnState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateIdle:
		l.setIdle(lc, true)
	case http.StateActive, http.StateHijacked, http.StateClosed:
		l.setIdle(lc, false)
	}
}

// setIdle moves lc in or out of the idle list (l.mu held).
func (l *ConnLimiter) setIdle(lc *limitedConn, idle bool) {
	if lc.idle != nil {
		l.idle.Remove(lc.idle)
		lc.idle = nil
	}
	if idle && !lc.released.Load() {
		lc.idle = l.idle.PushBack(lc)
	}
}

type limitListener struct {
	net.Listener
	l *ConnLimiter
}

// Accept returns the next connection that gets a slot; those that do not
// are answered 503 and closed here.
func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err //nolint:wrapcheck // net/http inspects the listener's errors (net.Error, Temporary)
		}
		if lc := ln.l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// admit gives c a slot, closing the longest-idle connection or waiting for
// one to close if need be; nil when c was refused.
func (l *ConnLimiter) admit(c net.Conn) *limitedConn {
	var deadline time.Time
	for {
		now := time.Now()
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			lc := &limitedConn{Conn: c, l: l}
			lc.idle = l.idle.PushBack(lc) // silent until it sends a request
			l.mu.Unlock()
			return lc
		}
		if victim := l.oldestIdle(); victim != nil {
			// Its slot goes to c: open stays the same.
			lc := &limitedConn{Conn: c, l: l}
			lc.idle = l.idle.PushBack(lc)
			l.mu.Unlock()
			_ = victim.Conn.Close() // its server goroutine ends on the read error
			l.event(false)
			return lc
		}
		if l.saturated || !deadline.IsZero() && !now.Before(deadline) {
			// A wait timed out and no slot freed since: refuse at once.
			l.saturated = true
			l.mu.Unlock()
			l.refuse(c)
			l.event(true)
			return nil
		}
		if deadline.IsZero() {
			deadline = now.Add(l.cfg.Wait)
		}
		select { // a signal from before this check is stale (l.mu held: no slot freed unseen)
		case <-l.freed:
		default:
		}
		l.mu.Unlock()
		t := time.NewTimer(deadline.Sub(now))
		select {
		case <-l.freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// oldestIdle takes the longest-idle connection off the list and releases
// its slot (l.mu held); nil when none.
func (l *ConnLimiter) oldestIdle() *limitedConn {
	for e := l.idle.Front(); e != nil; e = l.idle.Front() {
		lc := e.Value.(*limitedConn)
		l.idle.Remove(e)
		lc.idle = nil
		if lc.released.CompareAndSwap(false, true) {
			return lc
		}
	}
	return nil
}

// release frees lc's slot (once).
func (l *ConnLimiter) release(lc *limitedConn) {
	if !lc.released.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	l.open--
	l.setIdle(lc, false)
	l.saturated = false
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// refusedResponse is the answer to a connection over the cap.
func refusedResponse() []byte {
	const body = `{"error":"too many connections; retry shortly"}`
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// refuse answers c 503 and closes it, without waiting on a slow client.
func (l *ConnLimiter) refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteLimit))
	_, _ = c.Write(l.refused)
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	_ = c.Close()
}

// event counts a connection over the cap (refused, or an idle one closed)
// and logs the first of a burst.
func (l *ConnLimiter) event(refused bool) {
	if m := l.metrics; m != nil {
		if refused {
			m.refused.Inc()
		} else {
			m.evicted.Inc()
		}
	}
	now := time.Now()
	l.mu.Lock()
	first := now.Sub(l.lastEvent) > defaultBurstGap
	l.lastEvent = now
	open := l.open
	l.mu.Unlock()
	if first {
		l.log.Warn("HTTP connection limit reached: closing idle connections, refusing new ones when none is idle (logged once per burst; see maskpredictor_http_connections_*)",
			zap.Int("max_conns", l.max), zap.Int("open", open), zap.Bool("refused", refused))
	}
}

// limitedConn is a connection holding a slot.
type limitedConn struct {
	net.Conn
	l        *ConnLimiter
	released atomic.Bool
	idle     *list.Element // in l.idle; guarded by l.mu
}

func (c *limitedConn) Close() error {
	c.l.release(c)
	return c.Conn.Close() //nolint:wrapcheck // a net.Conn's own error, for net/http
}

// CloseWrite half-closes the connection, as net/http does after its 431
// answer (so the client reads it before the connection is reset).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() //nolint:wrapcheck // a net.Conn's own error
	}
	return nil
}

// Write passes net/http's writes through, except its canned text/plain
// error answers, which become JSON (ConnLimiter's doc).
func (c *limitedConn) Write(b []byte) (int, error) {
	if out, ok := c.l.rewriteCanned(b); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err //nolint:wrapcheck // net/http inspects net errors
		}
		return len(b), nil
	}
	return c.Conn.Write(b) //nolint:wrapcheck // net/http inspects net errors
}

// cannedHeaders are the headers of the answers net/http writes itself
// (net/http/server.go, conn.serve: errorHeaders). A handler's answer never
// has them in this order: net/http sorts headers, Connection before
// Content-Type, and adds Date.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// rewriteCanned turns "HTTP/1.1 <code> <text>" + cannedHeaders + body into
// the same status with a JSON body.
func (l *ConnLimiter) rewriteCanned(b []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if len(b) < len(proto)+3 || !bytes.HasPrefix(b, []byte(proto)) {
		return nil, false
	}
	i := bytes.Index(b, []byte(cannedHeaders))
	if i < 0 || bytes.IndexByte(b[:i], '\n') >= 0 {
		return nil, false
	}
	code, err := strconv.Atoi(string(b[len(proto) : len(proto)+3]))
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	body := string(b[i+len(cannedHeaders):])
	var msg string
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = l.header
	default:
		// "400 Bad Request: missing required Host header", "400 Bad Request",
		// "Unsupported transfer encoding", "505 HTTP Version Not Supported: …"
		msg = strings.TrimPrefix(body, strconv.Itoa(code)+" ")
		if st := http.StatusText(code); strings.HasPrefix(msg, st) {
			msg = strings.ToLower(st) + msg[len(st):]
		} else if msg != "" {
			msg = strings.ToLower(msg[:1]) + msg[1:]
		}
		if code == http.StatusBadRequest && msg == "bad request" {
			msg = "malformed HTTP request"
		}
	}
	js := appendError(make([]byte, 0, 32+len(msg)), msg, -1)
	out := make([]byte, 0, 160+len(js))
	out = fmt.Appendf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		code, http.StatusText(code), len(js))
	return append(out, js...), true
}

// connMetrics are the connection limiter's metrics.
type connMetrics struct {
	open    prometheus.GaugeFunc
	refused prometheus.Counter
	evicted prometheus.Counter
	source  atomic.Pointer[ConnLimiter]
}

func newConnMetrics() *connMetrics {
	m := new(connMetrics)
	m.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "maskpredictor_http_open_connections",
		Help: "HTTP connections open now (capped by --max-conns).",
	}, func() float64 {
		if l := m.source.Load(); l != nil {
			return float64(l.Open())
		}
		return 0
	})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_http_connections_refused_total",
		Help: "New HTTP connections answered 503 and closed because the connection cap was reached and none was idle.",
	})
	m.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "maskpredictor_http_idle_connections_closed_total",
		Help: "Idle HTTP connections closed to make room for new ones at the connection cap.",
	})
	return m
}

func (m *connMetrics) setSource(l *ConnLimiter) { m.source.Store(l) }
