package labels

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// DefaultMaxLabels bounds the store: a guest in the Rails app's Redis
// writes a bounded amount. 100,000 labels are about 30 MB.
const DefaultMaxLabels = 100_000

// ErrFull is returned when a new name would take the store past MaxLabels
// (relabelling a stored name is always accepted).
var ErrFull = errors.New("label store is full")

// Config configures a Store.
type Config struct {
	// Key is the hash (default Key). Only tests change it.
	Key string
	// CachePrefix is the prediction cache's key prefix, whose entry for a
	// labelled name is rewritten with the label (default
	// "maskpredictor:prediction:", cache.KeyPrefix).
	CachePrefix string
	// MaxLabels bounds the number of labelled names (default
	// DefaultMaxLabels).
	MaxLabels int
	// Limits are the predictor's name limits (default predictor.DefaultLimits).
	Limits predictor.Limits
	// Now stamps labelled_at when the caller did not (default time.Now).
	Now func() time.Time
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Key == "" {
		c.Key = Key
	}
	if c.CachePrefix == "" {
		c.CachePrefix = "maskpredictor:prediction:"
	}
	if c.MaxLabels == 0 {
		c.MaxLabels = DefaultMaxLabels
	}
	c.Limits = c.Limits.WithDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.MaxLabels < 0 {
		return fmt.Errorf("labels: MaxLabels %d is negative", c.MaxLabels)
	}
	return nil
}

// Store reads and writes labels. Safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a store over rdb (which the caller owns and closes).
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("labels: nil redis client")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, cfg: cfg}, nil
}

// Config returns the effective configuration.
func (s *Store) Config() Config { return s.cfg }

// putScript stores one label and rewrites its cache entry atomically. It
// refuses a new field when the hash holds MaxLabels already (0), and keeps
// a stored label whose labelled_at is newer than the new one's (2: a job
// redelivered after a crash must not undo a later correction).
// KEYS[1] hash, KEYS[2] cache key; ARGV[1] field, ARGV[2] label JSON,
// ARGV[3] prediction JSON, ARGV[4] max labels (0: no bound), ARGV[5] the
// new label's labelled_at (TimeFormat).
var putScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  local max = tonumber(ARGV[4])
  if max > 0 and redis.call('HLEN', KEYS[1]) >= max then
    return 0
  end
else
  local ok, prev = pcall(cjson.decode, old)
  if ok and type(prev) == 'table' and type(prev['labelled_at']) == 'string' and prev['labelled_at'] > ARGV[5] then
    return 2
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
`)

// Put validates l and stores it: the label under its normalized name
// (replacing an earlier label of that name) and the name's cache entry
// rewritten with the label's prediction, with no expiry (the label answers
// until it is deleted). LabelledAt is stamped when zero. It returns the
// stored label and the convention's warnings. Invalid labels wrap
// ErrInvalid and store nothing. When the name already has a label with a
// later labelled_at, that label stays and is returned (newest wins, so a
// replayed old job cannot undo a later correction).
func (s *Store) Put(ctx context.Context, l Label) (Label, []string, error) {
	warnings, err := Validate(l, s.cfg.Limits)
	if err != nil {
		return Label{}, nil, err
	}
	if l.LabelledAt.IsZero() {
		l.LabelledAt = s.cfg.Now()
	}
	l.LabelledAt = l.LabelledAt.UTC()
	b, err := l.MarshalJSON()
	if err != nil {
		return Label{}, nil, fmt.Errorf("encoding label: %w", err)
	}
	if len(b) > MaxEncoded {
		return Label{}, nil, fmt.Errorf("%w: %d bytes encoded (at most %d)", ErrInvalid, len(b), MaxEncoded)
	}
	norm := l.Normalized()
	pred := l.Prediction().AppendJSON(nil)
	res, err := putScript.Run(ctx, s.rdb, []string{s.cfg.Key, s.cfg.CachePrefix + norm},
		norm, b, pred, s.cfg.MaxLabels, l.LabelledAt.Format(TimeFormat)).Int()
	if err != nil {
		return Label{}, nil, fmt.Errorf("storing label %q: %w", norm, err)
	}
	switch res {
	case 0:
		return Label{}, nil, fmt.Errorf("storing label %q: %w (%d labels; delete some or raise LABELS_MAX)", norm, ErrFull, s.cfg.MaxLabels)
	case 2:
		newer, ok, err := s.Get(ctx, l.MaskName)
		if err != nil || !ok {
			return Label{}, nil, fmt.Errorf("reading the newer label of %q: %w", norm, err)
		}
		return newer, nil, nil
	}
	return l, warnings, nil
}

// Get returns the label of a name (any spelling: it is normalized).
func (s *Store) Get(ctx context.Context, maskName string) (Label, bool, error) {
	norm := predictor.Normalize(maskName)
	if norm == "" {
		return Label{}, false, nil
	}
	b, err := s.rdb.HGet(ctx, s.cfg.Key, norm).Bytes()
	if errors.Is(err, redis.Nil) {
		return Label{}, false, nil
	}
	if err != nil {
		return Label{}, false, fmt.Errorf("reading label %q: %w", norm, err)
	}
	var l Label
	if err := l.UnmarshalJSON(b); err != nil {
		return Label{}, false, fmt.Errorf("label %q in %s: %w", norm, s.cfg.Key, err)
	}
	return l, true, nil
}

// deleteScript removes a label and the cache entry it wrote (only if the
// entry is still the label's: a model prediction written since is kept).
var deleteScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
local v = redis.call('GET', KEYS[2])
if v and string.find(v, '"source":"label"', 1, true) then
  redis.call('DEL', KEYS[2])
end
return n
`)

// Delete removes the label of a name (any spelling) and its label cache
// entry, so the model answers the name again. found is false when there
// was no label.
func (s *Store) Delete(ctx context.Context, maskName string) (found bool, err error) {
	norm := predictor.Normalize(maskName)
	if norm == "" {
		return false, nil
	}
	n, err := deleteScript.Run(ctx, s.rdb, []string{s.cfg.Key, s.cfg.CachePrefix + norm}, norm).Int()
	if err != nil {
		return false, fmt.Errorf("deleting label %q: %w", norm, err)
	}
	return n > 0, nil
}

// Len is the number of labelled names.
func (s *Store) Len(ctx context.Context) (int64, error) {
	n, err := s.rdb.HLen(ctx, s.cfg.Key).Result()
	if err != nil {
		return 0, fmt.Errorf("counting labels: %w", err)
	}
	return n, nil
}

// Page is one page of List.
type Page struct {
	Labels []Label
	// Next is the cursor of the next page; 0 when this is the last.
	Next uint64
}

// List returns about count labels from cursor (0: the start), in the
// hash's order (HSCAN: a label stored during the scan may or may not be
// listed; none is listed twice within one scan unless the hash is resized).
// Entries that cannot be decoded are skipped.
func (s *Store) List(ctx context.Context, cursor uint64, count int) (Page, error) {
	if count <= 0 {
		count = 100
	}
	kv, next, err := s.rdb.HScan(ctx, s.cfg.Key, cursor, "", int64(count)).Result()
	if err != nil {
		return Page{}, fmt.Errorf("listing labels: %w", err)
	}
	p := Page{Next: next, Labels: make([]Label, 0, len(kv)/2)}
	for i := 0; i+1 < len(kv); i += 2 {
		var l Label
		if l.UnmarshalJSON([]byte(kv[i+1])) == nil {
			p.Labels = append(p.Labels, l)
		}
	}
	return p, nil
}

// All returns every label, sorted by normalized name (deterministic
// exports). Entries that cannot be decoded are counted in bad.
func (s *Store) All(ctx context.Context) (all []Label, bad int, err error) {
	m, err := s.rdb.HGetAll(ctx, s.cfg.Key).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("reading labels: %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var l Label
		if l.UnmarshalJSON([]byte(m[k])) != nil {
			bad++
			continue
		}
		all = append(all, l)
	}
	return all, bad, nil
}

// Normalized reports which of the normalized names have a label (for
// leaving labelled names out of the review queue).
func (s *Store) Normalized(ctx context.Context, norms []string) ([]bool, error) {
	out := make([]bool, len(norms))
	if len(norms) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.cfg.Key, norms...).Result()
	if err != nil {
		return nil, fmt.Errorf("checking labels: %w", err)
	}
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// BySource counts the stored labels by source ("" for none given).
func BySource(all []Label) map[string]int {
	m := map[string]int{}
	for _, l := range all {
		m[l.Source]++
	}
	return m
}
