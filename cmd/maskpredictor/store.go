package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/reload"
	"github.com/maskpredictor/maskpredictor/model"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// startupFetchTimeout bounds reading MODEL_URI at start: past it the
// process starts on the rule fallback and the reloader keeps trying.
const startupFetchTimeout = 30 * time.Second

// openModelStore opens the store of a model URI (a path, file:// or
// s3://bucket/key) with the process environment (AWS_* variables).
func openModelStore(ctx context.Context, sys IO, uri string) (modelstore.Store, error) {
	st, err := modelstore.Open(ctx, uri, modelstore.Config{Getenv: sys.Env})
	if err != nil {
		if errors.Is(err, modelstore.ErrUnsupportedURI) {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		return nil, err
	}
	return st, nil
}

// loadURI reads the model at a MODEL_URI through its store, and checks it
// as a hot reload would (it parses, and the sample names predict). It
// returns the store version of the bytes read, so the reloader does not
// fetch the same object again.
func loadURI(ctx context.Context, sys IO, uri string) (*model.Model, string, error) {
	st, err := openModelStore(ctx, sys, uri)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, startupFetchTimeout)
	defer cancel()
	obj, err := st.Get(ctx)
	if err != nil {
		return nil, "", err
	}
	c, err := reload.Load(obj.Data, predictor.Limits{}, nil)
	if err != nil {
		return nil, obj.Version, err
	}
	return c.Model(), obj.Version, nil
}

// runModelPush is `model push FILE URI`: check the model as the service
// would, then upload it. Every running service polling URI picks it up.
func runModelPush(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("model push", sys)
	force := fs.Bool("force", false, "upload even if the model fails the checks a reload makes (it would be rejected)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: model push [--force] FILE|s3://…|default s3://bucket/key (or a path)", errUsage)
	}
	data, err := readModelBytes(ctx, sys, pos[0])
	if err != nil {
		return err
	}
	version := "unknown"
	c, lerr := reload.Load(data, predictor.Limits{}, nil)
	if c != nil {
		version = c.Version()
	}
	if lerr != nil {
		if !*force {
			return fmt.Errorf("%s would be rejected by the service (--force uploads it anyway): %w", pos[0], lerr)
		}
		fmt.Fprintf(sys.Stderr, "warning: %s fails the reload checks, uploading anyway: %v\n", pos[0], lerr)
	}
	st, err := openModelStore(ctx, sys, pos[1])
	if err != nil {
		return err
	}
	info, err := st.Put(ctx, data)
	if err != nil {
		return err
	}
	fmt.Fprintf(sys.Stderr, "pushed %s to %s (%d bytes, model version %s, store version %s)\n",
		pos[0], st.URI(), len(data), version, info.Version)
	fmt.Fprintln(sys.Stdout, version)
	return nil
}

// readModelBytes reads a model file as is, an object of a store
// (s3://…: copy an archived model over the live one), or the embedded model
// in the native format for "default" / "embedded" (a rollback target that
// needs no file).
func readModelBytes(ctx context.Context, sys IO, path string) ([]byte, error) {
	if modelstore.IsRemote(path) {
		st, err := openModelStore(ctx, sys, path)
		if err != nil {
			return nil, err
		}
		obj, err := st.Get(ctx)
		if err != nil {
			return nil, err
		}
		return obj.Data, nil
	}
	if path == "default" || path == "embedded" {
		m, err := predictor.DefaultModel()
		if err != nil {
			return nil, fmt.Errorf("embedded model: %w", err)
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			return nil, fmt.Errorf("embedded model: %w", err)
		}
		return buf.Bytes(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading model: %w", err)
	}
	return data, nil
}

// runModelPull is `model pull URI FILE`: download the model, check it
// parses, and write it atomically.
func runModelPull(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("model pull", sys)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: model pull s3://bucket/key FILE", errUsage)
	}
	st, err := openModelStore(ctx, sys, pos[0])
	if err != nil {
		return err
	}
	obj, err := st.Get(ctx)
	if err != nil {
		return err
	}
	m, err := model.Read(bytes.NewReader(obj.Data))
	if err != nil {
		return fmt.Errorf("%s is not a model: %w", pos[0], err)
	}
	if modelstore.IsRemote(pos[1]) {
		return fmt.Errorf("%w: model pull writes a local file; use model push to upload", errUsage)
	}
	dst, err := modelstore.Open(ctx, pos[1], modelstore.Config{})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if _, err := dst.Put(ctx, obj.Data); err != nil {
		return err
	}
	version := predictor.ModelVersion(m)
	fmt.Fprintf(sys.Stderr, "pulled %s (%d bytes, model version %s, store version %s) to %s\n",
		st.URI(), len(obj.Data), version, obj.Version, pos[1])
	fmt.Fprintln(sys.Stdout, version)
	return nil
}
