// Package modelstore reads and writes the model file MODEL_URI names: a
// local path (or file:// URL) or an S3 object (s3://bucket/key), on AWS or
// on any S3-compatible store.
//
// Every Get and Stat reports the object's version (its ETag on S3, its
// modification time, size and inode for a file), so a poller can tell a
// replaced model from the one it already serves with one cheap request.
package modelstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/maskpredictor/maskpredictor/model"
)

// Sentinel errors callers branch on (errors.Is).
var (
	// ErrNotFound: the file, object or bucket does not exist.
	ErrNotFound = errors.New("model not found")
	// ErrUnsupportedURI: the URI is neither a path, file:// nor s3://.
	ErrUnsupportedURI = errors.New("unsupported model URI")
	// ErrTooLarge: the object is larger than Config.MaxBytes.
	ErrTooLarge = errors.New("model too large")
)

// Info describes one version of the stored model.
type Info struct {
	// Version changes whenever the content may have changed: the ETag on
	// S3; "mtime size inode" for a file. It is opaque: compare, don't parse.
	Version string
	// ETag is the S3 ETag, unquoted ("" for files).
	ETag    string
	Size    int64
	ModTime time.Time
}

// Object is the stored model's bytes and the version they were read at.
type Object struct {
	Info
	Data []byte
}

// Store is where one model lives.
type Store interface {
	// URI is the location, as given to Open.
	URI() string
	// Stat returns the current version without reading the content.
	Stat(ctx context.Context) (Info, error)
	// Get reads the content; Info is the version of those bytes.
	Get(ctx context.Context) (*Object, error)
	// Put replaces the content (atomically: a reader sees the old model or
	// the new one, never part of one) and returns the new version.
	Put(ctx context.Context, data []byte) (Info, error)
}

// Config configures Open.
type Config struct {
	// Getenv reads the AWS settings: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
	// (an S3-compatible store; path-style addressing is then used),
	// AWS_REGION / AWS_DEFAULT_REGION, and static credentials
	// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. What it
	// does not give, the SDK's standard chain finds (shared config and
	// credential files, SSO, web identity, ECS/EC2 roles). Default: none.
	Getenv func(string) string
	// HTTPClient for S3 requests. Default: the SDK's.
	HTTPClient *http.Client
	// MaxBytes bounds the model read by Get. Default: model.MaxFileSize.
	MaxBytes int64
}

func (c Config) withDefaults() Config {
	if c.Getenv == nil {
		c.Getenv = func(string) string { return "" }
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = model.MaxFileSize
	}
	return c
}

// Location is a parsed model URI.
type Location struct {
	// Scheme is "file" or "s3".
	Scheme string
	// Path is the file path (Scheme "file").
	Path string
	// Bucket and Key name the object (Scheme "s3").
	Bucket, Key string
}

// String is the canonical URI.
func (l Location) String() string {
	if l.Scheme == "s3" {
		return "s3://" + l.Bucket + "/" + l.Key
	}
	return l.Path
}

// IsRemote reports whether uri names an object store rather than a file.
func IsRemote(uri string) bool {
	l, err := Parse(uri)
	return err == nil && l.Scheme != "file"
}

// Parse parses a model URI: "s3://bucket/key", "file:///abs/path", or a
// plain path (anything without a scheme).
func Parse(uri string) (Location, error) {
	if uri == "" {
		return Location{}, fmt.Errorf("%w: empty", ErrUnsupportedURI)
	}
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || strings.ContainsAny(scheme, `/\.`) {
		if strings.HasPrefix(strings.ToLower(uri), "s3:") {
			return Location{}, fmt.Errorf("%w: %q: want s3://bucket/key", ErrUnsupportedURI, uri)
		}
		return Location{Scheme: "file", Path: uri}, nil
	}
	switch strings.ToLower(scheme) {
	case "s3":
		bucket, key, _ := strings.Cut(rest, "/")
		if bucket == "" || key == "" || strings.HasSuffix(key, "/") {
			return Location{}, fmt.Errorf("%w: %q: want s3://bucket/key", ErrUnsupportedURI, uri)
		}
		return Location{Scheme: "s3", Bucket: bucket, Key: key}, nil
	case "file":
		u, err := url.Parse(uri)
		if err != nil {
			return Location{}, fmt.Errorf("%w: %q: %w", ErrUnsupportedURI, uri, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("%w: %q: file URLs must be local (file:///path)", ErrUnsupportedURI, uri)
		}
		if u.Path == "" {
			return Location{}, fmt.Errorf("%w: %q: no path", ErrUnsupportedURI, uri)
		}
		return Location{Scheme: "file", Path: u.Path}, nil
	default:
		return Location{}, fmt.Errorf("%w: %q (use a path, file:// or s3://bucket/key)", ErrUnsupportedURI, uri)
	}
}

// Open returns the store for uri. Nothing is read yet; for S3 the SDK
// configuration (region, credentials chain) is resolved here.
func Open(ctx context.Context, uri string, cfg Config) (Store, error) {
	loc, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if loc.Scheme == "s3" {
		return openS3(ctx, uri, loc, cfg)
	}
	return &fileStore{uri: uri, path: loc.Path, max: cfg.MaxBytes}, nil
}

// readCapped reads r to the end, failing with ErrTooLarge past max bytes.
func readCapped(r io.Reader, max int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", what, ErrTooLarge, max)
	}
	return data, nil
}
