package labels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RetrainKey holds the outcome of the last `maskpredictor retrain` (one JSON
// value, overwritten each run), for the dashboard and /metrics.
const RetrainKey = "maskpredictor:retrain:last"

// RetrainResult is what one retrain decided.
type RetrainResult struct {
	At time.Time `json:"at"`
	// Published is true when the new model was pushed.
	Published bool `json:"published"`
	// DryRun is true for `retrain --dry-run` (nothing could be published).
	DryRun bool `json:"dry_run,omitempty"`
	// NewScore and CurrentScore are the token accuracies of the new recipe
	// and of the model at the publish URI on the same held-out labels;
	// NewNameScore and CurrentNameScore the whole-name accuracies.
	NewScore         float64 `json:"new_token_accuracy"`
	CurrentScore     float64 `json:"current_token_accuracy"`
	NewNameScore     float64 `json:"new_name_accuracy"`
	CurrentNameScore float64 `json:"current_name_accuracy"`
	// Labels is how many stored labels took part; Scored how many tokens
	// the comparison scored.
	Labels int `json:"labels"`
	Scored int `json:"scored_tokens"`
	// NewVersion is the new model's version; CurrentVersion the one it was
	// compared with.
	NewVersion     string `json:"new_version"`
	CurrentVersion string `json:"current_version"`
	// Reason says why it was (not) published.
	Reason string `json:"reason"`
}

// SaveRetrain records r as the last retrain (no expiry: one small value).
func SaveRetrain(ctx context.Context, rdb redis.UniversalClient, r RetrainResult) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding retrain result: %w", err)
	}
	if err := rdb.Set(ctx, RetrainKey, b, 0).Err(); err != nil {
		return fmt.Errorf("saving retrain result: %w", err)
	}
	return nil
}

// LastRetrain reads the last retrain; ok is false when none was recorded.
func LastRetrain(ctx context.Context, rdb redis.UniversalClient) (r RetrainResult, ok bool, err error) {
	b, err := rdb.Get(ctx, RetrainKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("reading retrain result: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("decoding %s: %w", RetrainKey, err)
	}
	return r, true, nil
}
