package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions configure StartSentinel.
type SentinelOptions struct {
	// Master is the name the sentinels monitor. Default "mymaster".
	Master string
	// Replicas is the number of replicas of the first primary. Default 1.
	Replicas int
	// Sentinels is the number of sentinels (quorum: a majority). Default 3.
	Sentinels int
	// DownAfter is down-after-milliseconds (default 1 s) and
	// FailoverTimeout failover-timeout (default 5 s).
	DownAfter, FailoverTimeout time.Duration
	// Password is the data nodes' requirepass (and masterauth, and the
	// sentinels' auth-pass); SentinelPassword the sentinels' requirepass.
	Password, SentinelPassword string
}

// SentinelSet is a primary, its replicas and the sentinels that monitor
// them, each a private redis-server on a free loopback port, killed when
// the test ends.
type SentinelSet struct {
	tb   testing.TB
	opts SentinelOptions
	// Master is the monitored name; Nodes the data nodes (Nodes[0] the
	// first primary); Sentinels the sentinel processes and Addrs their
	// host:port.
	Master    string
	Nodes     []*Server
	Sentinels []*Server
	Addrs     []string

	mu       sync.Mutex
	clients  map[string]*redis.Client
	sclients map[int]*redis.SentinelClient
}

// StartSentinel starts a primary, its replicas (--replicaof, in sync
// before it returns) and the sentinels (`redis-server sentinel.conf
// --sentinel`, a generated configuration in their own directory), and
// waits until every sentinel knows every replica and every other sentinel,
// so that a failover can happen at once. Skipped when redis-server is
// missing or only TEST_REDIS_URL is available.
func StartSentinel(tb testing.TB, opts SentinelOptions) *SentinelSet {
	tb.Helper()
	if opts.Master == "" {
		opts.Master = "mymaster"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Sentinels == 0 {
		opts.Sentinels = 3
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	if opts.FailoverTimeout == 0 {
		opts.FailoverTimeout = 5 * time.Second
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server not installed: a Sentinel test needs its own redis-server processes")
	}
	if os.Getenv("TEST_REDIS_URL") != "" {
		tb.Skip("a Sentinel test needs private redis-server processes; TEST_REDIS_URL is set")
	}
	ss := &SentinelSet{tb: tb, opts: opts, Master: opts.Master}
	var auth []string
	if opts.Password != "" {
		auth = []string{"--masterauth", opts.Password}
	}
	primary := Start(tb, Options{Private: true, Password: opts.Password, Args: auth})
	ss.Nodes = append(ss.Nodes, primary)
	host, port, _ := net.SplitHostPort(primary.Addr)
	for i := 0; i < opts.Replicas; i++ {
		ss.Nodes = append(ss.Nodes, Start(tb, Options{Private: true, Password: opts.Password,
			Args: append([]string{"--replicaof", host, port}, auth...)}))
	}
	ctx := context.Background()
	ss.waitUntil(20*time.Second, "replicas in sync", func() (bool, string) {
		for _, n := range ss.Nodes[1:] {
			r := ss.info(ctx, ss.client(n), "replication")
			if r["master_link_status"] != "up" {
				return false, n.Addr + ": master_link_status " + r["master_link_status"]
			}
		}
		return true, ""
	})
	for i := 0; i < opts.Sentinels; i++ {
		ss.Sentinels = append(ss.Sentinels, ss.startSentinel(bin, primary.Addr))
	}
	for _, s := range ss.Sentinels {
		ss.Addrs = append(ss.Addrs, s.Addr)
	}
	ss.WaitReady(30 * time.Second)
	return ss
}

func (ss *SentinelSet) startSentinel(bin, primaryAddr string) *Server {
	tb := ss.tb
	host, port, _ := net.SplitHostPort(primaryAddr)
	s := &Server{tb: tb, opts: Options{Password: ss.opts.SentinelPassword}, Dir: tb.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		s.URL = "redis://" + s.Addr + "/0"
		conf := []string{
			"port " + strconv.Itoa(p),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + s.Dir,
			"logfile " + filepath.Join(s.Dir, "redis.log"),
			"loglevel notice",
			fmt.Sprintf("sentinel monitor %s %s %s %d", ss.Master, host, port, ss.opts.Sentinels/2+1),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", ss.Master, ss.opts.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", ss.Master, ss.opts.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", ss.Master),
		}
		if ss.opts.Password != "" {
			conf = append(conf, fmt.Sprintf("sentinel auth-pass %s %s", ss.Master, ss.opts.Password))
		}
		if ss.opts.SentinelPassword != "" {
			conf = append(conf, "requirepass "+ss.opts.SentinelPassword)
		}
		// Sentinel rewrites its configuration file: it must be its own.
		s.conf = filepath.Join(s.Dir, "sentinel.conf")
		if err := os.WriteFile(s.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		if lastErr = s.start(bin); lastErr == nil {
			tb.Cleanup(s.stop)
			return s
		}
	}
	tb.Fatalf("starting redis-server --sentinel: %v", lastErr)
	return nil
}

// SentinelClient returns a client of sentinel i (one per sentinel, closed
// at the end of the test).
func (ss *SentinelSet) SentinelClient(i int) *redis.SentinelClient {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if c := ss.sclients[i]; c != nil {
		return c
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: ss.Addrs[i], Password: ss.opts.SentinelPassword,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, MaxRetries: -1})
	if ss.sclients == nil {
		ss.sclients = map[int]*redis.SentinelClient{}
	}
	ss.sclients[i] = c
	ss.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// client is one client per data node (closed at the end of the test).
func (ss *SentinelSet) client(n *Server) *redis.Client {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if c := ss.clients[n.Addr]; c != nil {
		return c
	}
	c := redis.NewClient(&redis.Options{Addr: n.Addr, Password: ss.opts.Password,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, MaxRetries: -1})
	if ss.clients == nil {
		ss.clients = map[string]*redis.Client{}
	}
	ss.clients[n.Addr] = c
	ss.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitReady waits until every sentinel monitors the primary with every
// replica and every other sentinel known, and no failover in progress.
func (ss *SentinelSet) WaitReady(timeout time.Duration) {
	ss.tb.Helper()
	ctx := context.Background()
	clients := make([]*redis.SentinelClient, len(ss.Addrs))
	for i := range ss.Addrs {
		clients[i] = ss.SentinelClient(i)
	}
	ss.waitUntil(timeout, "sentinels ready", func() (bool, string) {
		for i, c := range clients {
			m, err := c.Master(ctx, ss.Master).Result()
			if err != nil {
				return false, fmt.Sprintf("sentinel %s: %v", ss.Addrs[i], err)
			}
			if m["num-other-sentinels"] != strconv.Itoa(len(ss.Addrs)-1) || m["num-slaves"] != strconv.Itoa(len(ss.Nodes)-1) ||
				m["flags"] != "master" {
				return false, fmt.Sprintf("sentinel %s: %v other sentinels, %v replicas, flags %v",
					ss.Addrs[i], m["num-other-sentinels"], m["num-slaves"], m["flags"])
			}
		}
		return true, ""
	})
}

// Primary is the primary's host:port as sentinel i (the first that
// answers) names it.
func (ss *SentinelSet) Primary(ctx context.Context) (string, error) {
	var lastErr error
	for i := range ss.Addrs {
		a, err := ss.SentinelClient(i).GetMasterAddrByName(ctx, ss.Master).Result()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel names the primary: %w", lastErr)
}

// Node is the data node at addr (nil if none).
func (ss *SentinelSet) Node(addr string) *Server {
	for _, n := range ss.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// WaitFailover waits until every sentinel that answers (a majority at
// least: a test may have stopped one) names a primary other than old and
// that node says it is a master, and returns it.
func (ss *SentinelSet) WaitFailover(old string, timeout time.Duration) *Server {
	ss.tb.Helper()
	ctx := context.Background()
	var primary string
	ss.waitUntil(timeout, "failover away from "+old, func() (bool, string) {
		primary = ""
		answered, lastErr := 0, ""
		for i := range ss.Addrs {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			a, err := ss.SentinelClient(i).GetMasterAddrByName(cctx, ss.Master).Result()
			cancel()
			if err != nil || len(a) != 2 {
				lastErr = fmt.Sprintf("sentinel %s: %v", ss.Addrs[i], err)
				continue
			}
			answered++
			addr := net.JoinHostPort(a[0], a[1])
			if addr == old || (primary != "" && addr != primary) {
				return false, fmt.Sprintf("sentinel %s names %s", ss.Addrs[i], addr)
			}
			primary = addr
		}
		if answered <= len(ss.Addrs)/2 {
			return false, fmt.Sprintf("%d of %d sentinels answer; %s", answered, len(ss.Addrs), lastErr)
		}
		n := ss.Node(primary)
		if n == nil {
			return false, "unknown node " + primary
		}
		if r := ss.info(ctx, ss.client(n), "replication"); r["role"] != "master" {
			return false, primary + " is still " + r["role"]
		}
		return true, ""
	})
	return ss.Node(primary)
}

// info reads one INFO section as a map ("" values on error).
func (ss *SentinelSet) info(ctx context.Context, c *redis.Client, section string) map[string]string {
	out := map[string]string{}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := c.Info(cctx, section).Result()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// Rejoin restarts n, a data node that died, as a replica of primary. That
// is what Redis' replication documentation asks for a node without
// persistence ("Safety of replication when master has persistence turned
// off"): restarted as it was, an empty master, it can have a replica copy
// its empty data set before the sentinels make it a replica (seen once in
// CI: the promoted primary lost every job it held).
func (ss *SentinelSet) Rejoin(n, primary *Server) {
	ss.tb.Helper()
	host, port, _ := net.SplitHostPort(primary.Addr)
	var args []string
	for i := 0; i < len(n.opts.Args); i++ {
		if n.opts.Args[i] == "--replicaof" {
			i += 2
			continue
		}
		args = append(args, n.opts.Args[i])
	}
	n.opts.Args = append(args, "--replicaof", host, port)
	n.StartAgain()
}

// Role is what the node at addr says it is ("master", "slave"; "" when it
// does not answer).
func (ss *SentinelSet) Role(n *Server) string {
	return ss.info(context.Background(), ss.client(n), "replication")["role"]
}

func (ss *SentinelSet) waitUntil(timeout time.Duration, what string, ok func() (bool, string)) {
	ss.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, why := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			ss.tb.Fatalf("redistest: %s: not after %v: %s", what, timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
