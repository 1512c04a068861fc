// Package cache is the Redis prediction cache: the contract Rails reads.
//
// Every prediction is stored as its JSON (predictor.Prediction's encoding,
// which carries model_version) under
//
//	maskpredictor:prediction:<normalized name>
//
// where the normalized name is predictor.Normalize (NFKC, case folded, tokens
// joined by one space; the Ruby twin is deploy/rails/mask_predictor). Rails
// reads an entry with one GET. For the worker an entry written by another
// model version is a miss, and a hit is answered with the caller's own
// spelling of the name (Answer).
//
// A name a person labelled (package labels) is answered by its label, whatever
// model serves: every look-up also reads the label hash, in the same round
// trip, so a label answers even after its cache entry expired or was
// overwritten.
package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// KeyPrefix is the prefix of every cache key (the Rails contract).
const KeyPrefix = "maskpredictor:prediction:"

// ErrEmptyName is returned for an empty normalized name: a name without
// tokens has no prediction and no cache entry.
var ErrEmptyName = errors.New("cache: empty normalized name")

// Config configures a Cache. The zero value is usable after WithDefaults.
type Config struct {
	// Prefix of every key (default KeyPrefix). Only tests change it.
	Prefix string
	// TTL of an entry; 0 keeps entries until they are replaced (a new model
	// version overwrites them as they are asked for).
	TTL time.Duration
	// Logger reports entries that cannot be decoded (default: no-op).
	Logger *zap.Logger
	// LabelsKey is the label hash read by every look-up (default
	// labels.Key); NoLabels reads none.
	LabelsKey string
}

// NoLabels as Config.LabelsKey makes look-ups read no labels.
const NoLabels = "-"

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = KeyPrefix
	}
	if c.LabelsKey == "" {
		c.LabelsKey = labels.Key
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.TTL < 0:
		return fmt.Errorf("cache: negative TTL %v", c.TTL)
	case c.TTL > 0 && c.TTL < time.Millisecond:
		return fmt.Errorf("cache: TTL %v is below Redis' 1ms resolution", c.TTL)
	}
	return nil
}

// Cache reads and writes predictions. It is safe for concurrent use.
type Cache struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a cache over rdb (which the caller owns and closes).
func New(rdb redis.UniversalClient, cfg Config) (*Cache, error) {
	if rdb == nil {
		return nil, errors.New("cache: nil redis client")
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Cache{rdb: rdb, cfg: cfg}, nil
}

// Config returns the effective configuration.
func (c *Cache) Config() Config { return c.cfg }

// Key is the Redis key of a normalized name.
func (c *Cache) Key(normalized string) string { return c.cfg.Prefix + normalized }

// Get returns the entry for normalized when it was written by model
// version wantVersion ("" accepts any version), or the name's label. ok is
// false on a miss: no entry, another model version, or an entry that
// cannot be decoded. The prediction is as stored: use Answer to give it
// the caller's tokens.
func (c *Cache) Get(ctx context.Context, normalized, wantVersion string) (p *predictor.Prediction, ok bool, err error) {
	if normalized == "" {
		return nil, false, ErrEmptyName
	}
	preds, err := c.GetMany(ctx, []string{normalized}, wantVersion)
	if err != nil {
		return nil, false, fmt.Errorf("cache get %q: %w", normalized, err)
	}
	return preds[0], preds[0] != nil, nil
}

// GetMany is Get for many names in one MGET. preds[i] is nil on a miss.
func (c *Cache) GetMany(ctx context.Context, normalized []string, wantVersion string) ([]*predictor.Prediction, error) {
	if len(normalized) == 0 {
		return nil, nil
	}
	pipe := c.rdb.Pipeline()
	l, err := c.AddGetMany(ctx, pipe, normalized)
	if err != nil {
		return nil, err
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("cache mget of %d names: %w", len(normalized), err)
	}
	return l.Result(wantVersion)
}

// Lookup is a GetMany queued on a caller's pipeline.
type Lookup struct {
	c      *Cache
	norms  []string
	cmd    *redis.SliceCmd
	labels *redis.SliceCmd // nil when labels are not read
}

// AddGetMany queues the MGET of normalized on pipe, so a caller can send it
// in the same round trip as its own commands; read it with Result after
// pipe.Exec.
func (c *Cache) AddGetMany(ctx context.Context, pipe redis.Pipeliner, normalized []string) (*Lookup, error) {
	l := &Lookup{c: c, norms: normalized}
	if len(normalized) == 0 {
		return l, nil
	}
	keys := make([]string, len(normalized))
	for i, n := range normalized {
		if n == "" {
			return nil, fmt.Errorf("name %d: %w", i, ErrEmptyName)
		}
		keys[i] = c.Key(n)
	}
	l.cmd = pipe.MGet(ctx, keys...)
	if c.cfg.LabelsKey != NoLabels {
		l.labels = pipe.HMGet(ctx, c.cfg.LabelsKey, normalized...)
	}
	return l, nil
}

// Result returns the entries written by wantVersion ("" accepts any), or
// the name's label, which wins over any entry; preds[i] is nil on a miss.
func (l *Lookup) Result(wantVersion string) ([]*predictor.Prediction, error) {
	if l.cmd == nil {
		return nil, nil
	}
	vals, err := l.cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("cache mget of %d names: %w", len(l.norms), err)
	}
	var labelled []any
	if l.labels != nil {
		if labelled, err = l.labels.Result(); err != nil {
			return nil, fmt.Errorf("reading labels of %d names: %w", len(l.norms), err)
		}
	}
	preds := make([]*predictor.Prediction, len(l.norms))
	for i, v := range vals {
		if i < len(labelled) {
			if s, ok := labelled[i].(string); ok {
				var lab labels.Label
				if err := lab.UnmarshalJSON([]byte(s)); err == nil && len(lab.Breakdown) > 0 {
					preds[i] = lab.Prediction()
					continue
				}
				l.c.cfg.Logger.Warn("undecodable label ignored",
					zap.String("key", l.c.cfg.LabelsKey), zap.String("field", l.norms[i]))
			}
		}
		s, isString := v.(string)
		if !isString {
			continue // nil: absent
		}
		if p, ok := l.c.decode(l.norms[i], []byte(s), wantVersion); ok {
			preds[i] = p
		}
	}
	return preds, nil
}

func (c *Cache) decode(normalized string, b []byte, wantVersion string) (*predictor.Prediction, bool) {
	p, err := decodeFast(b)
	if err != nil {
		p = new(predictor.Prediction)
		err = p.UnmarshalJSON(b)
	}
	if err != nil {
		c.cfg.Logger.Warn("undecodable cache entry treated as a miss",
			zap.String("key", c.Key(normalized)), zap.Error(err))
		return nil, false
	}
	if wantVersion != "" && p.ModelVersion != wantVersion && p.Source != "label" {
		return nil, false
	}
	if len(p.Tokens) == 0 {
		return nil, false
	}
	return p, true
}

// Put stores p under normalized, with the configured TTL.
func (c *Cache) Put(ctx context.Context, normalized string, p *predictor.Prediction) error {
	if normalized == "" {
		return ErrEmptyName
	}
	if err := c.rdb.Set(ctx, c.Key(normalized), p.AppendJSON(make([]byte, 0, 512)), c.cfg.TTL).Err(); err != nil {
		return fmt.Errorf("cache put %q: %w", normalized, err)
	}
	return nil
}

// Entry is one prediction to store.
type Entry struct {
	Normalized string
	Prediction *predictor.Prediction
	// JSON, when set, is Prediction.AppendJSON's output, which the caller
	// already has (the worker writes the same bytes into callback jobs): it
	// is stored as is instead of encoding the prediction again. It must not
	// be modified until the write is done.
	JSON []byte
}

// PutMany stores entries in one pipelined round trip.
func (c *Cache) PutMany(ctx context.Context, entries []Entry) error {
	switch len(entries) {
	case 0:
		return nil
	case 1:
		e := entries[0]
		if e.JSON == nil {
			return c.Put(ctx, e.Normalized, e.Prediction)
		}
		if e.Normalized == "" {
			return ErrEmptyName
		}
		if err := c.rdb.Set(ctx, c.Key(e.Normalized), e.JSON, c.cfg.TTL).Err(); err != nil {
			return fmt.Errorf("cache put %q: %w", e.Normalized, err)
		}
		return nil
	}
	pipe := c.rdb.Pipeline()
	if err := c.AddPuts(ctx, pipe, entries); err != nil {
		return err
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cache put of %d names: %w", len(entries), err)
	}
	return nil
}

// AddPuts queues the SETs of entries on pipe, so a caller can send them
// in the same round trip as its own commands.
func (c *Cache) AddPuts(ctx context.Context, pipe redis.Pipeliner, entries []Entry) error {
	for i, e := range entries {
		if e.Normalized == "" {
			return fmt.Errorf("entry %d: %w", i, ErrEmptyName)
		}
		val := e.JSON
		if val == nil {
			val = e.Prediction.AppendJSON(nil)
		}
		pipe.Set(ctx, c.Key(e.Normalized), val, c.cfg.TTL)
	}
	return nil
}

// Answer applies a cached prediction to the caller's own name and tokens:
// the caller gets its spelling back with the cached labels and confidences.
// ok is false when the token counts differ (the entry was filled by a
// spelling that tokenizes differently): the caller should predict afresh.
func Answer(cached *predictor.Prediction, name, normalized string, toks []string) (*predictor.Prediction, bool) {
	if cached == nil || len(cached.Tokens) != len(toks) || len(cached.Labels) != len(toks) {
		return nil, false
	}
	p := *cached
	p.MaskName = name
	p.Tokens = toks
	p.NormalizedName = normalized
	// Per-spelling extras do not carry over.
	p.Marginals, p.MarginalLabels, p.Alternatives = nil, nil, nil
	if len(p.TokenConfidences) != len(toks) {
		p.TokenConfidences = nil
	}
	return &p, true
}
