package sidekiq

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// DefaultQueue is the Sidekiq queue Rails pushes prediction jobs to unless configured
// otherwise.
const DefaultQueue = "mask_predictions"

// QueueWeight is one queue the sidecar works, with its relative weight. The bridge
// transfers every queue independently (each bounded by its own backpressure), so weights
// matter where the work is picked: worker/ passes them to asynq.Config.Queues (see
// AsynqQueues), which picks the next task the way Sidekiq's weighted fetch does.
type QueueWeight struct {
	Name   string
	Weight int
}

// queueNameRE is what Sidekiq's Web UI accepts as a queue name (web/application.rb); a
// queue it rejects could not be inspected or retried there.
var queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_:.\-]+$`)

// ParseQueues parses a queue list such as "mask_predictions" or "a:3,b:1" (a name, then
// an optional ":weight", weight ≥ 1, default 1). Because Sidekiq queue names may contain
// ':', a trailing ":<digits>" is always read as the weight. Names must be what Sidekiq's
// Web UI accepts ([A-Za-z0-9_:.-]) and may not repeat.
func ParseQueues(s string) ([]QueueWeight, error) {
	var out []QueueWeight
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		qw := QueueWeight{Name: part, Weight: 1}
		if i := strings.LastIndexByte(part, ':'); i >= 0 && i < len(part)-1 && isDigits(part[i+1:]) {
			w, err := strconv.Atoi(part[i+1:])
			if err != nil || w < 1 {
				return nil, fmt.Errorf("queue %q: weight must be an integer ≥ 1, e.g. %q", part, part[:i]+":1")
			}
			qw = QueueWeight{Name: part[:i], Weight: w}
		}
		if err := validateQueueName(qw.Name); err != nil {
			return nil, err
		}
		if seen[qw.Name] {
			return nil, fmt.Errorf("queue %q is listed twice", qw.Name)
		}
		seen[qw.Name] = true
		out = append(out, qw)
	}
	if len(out) == 0 {
		return nil, errors.New(`no queue given: expected e.g. "mask_predictions" or "a:3,b:1"`)
	}
	return out, nil
}

func validateQueueName(name string) error {
	if name == "" {
		return errors.New("queue name is empty")
	}
	if !queueNameRE.MatchString(name) {
		return fmt.Errorf("queue name %q: only letters, digits and _ : . - are allowed (what Sidekiq Web accepts)", name)
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// QueueNames returns the names of qs in order.
func QueueNames(qs []QueueWeight) []string {
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	return names
}

// AsynqQueues converts qs to asynq.Config.Queues (asynq queue = Sidekiq queue name).
func AsynqQueues(qs []QueueWeight) map[string]int {
	m := make(map[string]int, len(qs))
	for _, q := range qs {
		m[q.Name] = max(q.Weight, 1)
	}
	return m
}

// NewIdentity returns a process identity in Sidekiq's own format, host:pid:nonce, used
// both for the bridge's in-flight lists and for the process entry on Sidekiq's Busy page.
// host is what the Busy page shows (cmd passes $DYNO on Heroku, as Sidekiq does); empty
// means the machine's hostname. The random nonce keeps a restarted process with a
// recycled pid (always pid 1 in a container) from claiming its predecessor's lists.
func NewIdentity(host string) string {
	if host == "" {
		host = hostname()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}
