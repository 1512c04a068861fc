package modelstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore"
	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/modelstore/s3test"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want modelstore.Location
		err  bool
	}{
		{in: "model.bin", want: modelstore.Location{Scheme: "file", Path: "model.bin"}},
		{in: "/srv/models/m.bin", want: modelstore.Location{Scheme: "file", Path: "/srv/models/m.bin"}},
		{in: "file:///srv/m.bin", want: modelstore.Location{Scheme: "file", Path: "/srv/m.bin"}},
		{in: "./a://b", want: modelstore.Location{Scheme: "file", Path: "./a://b"}},
		{in: "s3://bucket/models/m.bin", want: modelstore.Location{Scheme: "s3", Bucket: "bucket", Key: "models/m.bin"}},
		{in: "S3://bucket/k", want: modelstore.Location{Scheme: "s3", Bucket: "bucket", Key: "k"}},
		{in: "s3://bucket", err: true},
		{in: "s3://bucket/", err: true},
		{in: "s3://bucket/dir/", err: true},
		{in: "s3:/bucket/k", err: true},
		{in: "https://example.com/m.bin", err: true},
		{in: "file://host/m.bin", err: true},
		{in: "", err: true},
	} {
		got, err := modelstore.Parse(tc.in)
		if tc.err {
			if !errors.Is(err, modelstore.ErrUnsupportedURI) {
				t.Errorf("Parse(%q) = %+v, %v; want ErrUnsupportedURI", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if !modelstore.IsRemote("s3://b/k") || modelstore.IsRemote("/tmp/x") {
		t.Error("IsRemote")
	}
}

// exercise runs the same checks against any store: missing → ErrNotFound;
// Put then Get round-trips with one version; the same version from Stat;
// new content → a new version; a too-large object is refused.
func exercise(t *testing.T, open func(max int64) modelstore.Store) {
	ctx := context.Background()
	st := open(0)
	if _, err := st.Stat(ctx); !errors.Is(err, modelstore.ErrNotFound) {
		t.Fatalf("Stat of a missing model: %v, want ErrNotFound", err)
	}
	if _, err := st.Get(ctx); !errors.Is(err, modelstore.ErrNotFound) {
		t.Fatalf("Get of a missing model: %v, want ErrNotFound", err)
	}
	a := bytes.Repeat([]byte("model A "), 1000)
	pa, err := st.Put(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := st.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obj.Data, a) || obj.Version != pa.Version || obj.Size != int64(len(a)) {
		t.Fatalf("Get after Put: %d bytes version %q, want %d bytes version %q", len(obj.Data), obj.Version, len(a), pa.Version)
	}
	sa, err := st.Stat(ctx)
	if err != nil || sa.Version != pa.Version {
		t.Fatalf("Stat = %q, %v; want %q", sa.Version, err, pa.Version)
	}
	time.Sleep(2 * time.Millisecond) // distinct mtimes even on coarse clocks
	b := bytes.Repeat([]byte("model B "), 1000)
	pb, err := st.Put(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if pb.Version == pa.Version {
		t.Fatalf("new content kept version %q", pb.Version)
	}
	sb, err := st.Stat(ctx)
	if err != nil || sb.Version != pb.Version {
		t.Fatalf("Stat after replace = %q, %v; want %q", sb.Version, err, pb.Version)
	}
	small := open(100)
	if _, err := small.Get(ctx); !errors.Is(err, modelstore.ErrTooLarge) {
		t.Fatalf("Get past MaxBytes: %v, want ErrTooLarge", err)
	}
}

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.bin")
	exercise(t, func(max int64) modelstore.Store {
		st, err := modelstore.Open(context.Background(), path, modelstore.Config{MaxBytes: max})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
	// A file replaced by rename with the old mtime and size (cp -p) is
	// still a new version: its inode differs.
	st, _ := modelstore.Open(context.Background(), "file://"+path, modelstore.Config{})
	before, err := st.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(path), "other")
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, before.ModTime, before.ModTime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	after, err := st.Stat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Version == before.Version {
		t.Fatalf("rename with the same mtime and size kept version %q", after.Version)
	}
}

func TestS3Store(t *testing.T) {
	srv := s3test.Start(t, "models")
	exercise(t, func(max int64) modelstore.Store {
		st, err := modelstore.Open(context.Background(), srv.URI("prod/model.bin"),
			modelstore.Config{Getenv: srv.Getenv(nil), MaxBytes: max})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
	// The ETag is the change signal: identical content keeps it.
	st, _ := modelstore.Open(context.Background(), srv.URI("prod/model.bin"), modelstore.Config{Getenv: srv.Getenv(nil)})
	ctx := context.Background()
	obj, err := st.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if obj.ETag == "" || obj.Version != "etag="+obj.ETag {
		t.Fatalf("S3 version %q, ETag %q", obj.Version, obj.ETag)
	}
	again, err := st.Put(ctx, obj.Data)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != obj.Version {
		t.Fatalf("re-uploading identical bytes changed the version: %q → %q", obj.Version, again.Version)
	}
	// A missing bucket is not found, too.
	nb, _ := modelstore.Open(ctx, "s3://no-such-bucket/m.bin", modelstore.Config{Getenv: srv.Getenv(nil)})
	if _, err := nb.Stat(ctx); !errors.Is(err, modelstore.ErrNotFound) {
		t.Fatalf("Stat in a missing bucket: %v, want ErrNotFound", err)
	}
	// AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL.
	bad := srv.Getenv(map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": srv.URL})
	st2, _ := modelstore.Open(ctx, srv.URI("prod/model.bin"), modelstore.Config{Getenv: bad})
	if _, err := st2.Stat(ctx); err != nil {
		t.Fatalf("AWS_ENDPOINT_URL_S3: %v", err)
	}
}
