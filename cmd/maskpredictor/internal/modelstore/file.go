package modelstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileStore is a model file on a local (or mounted) file system.
type fileStore struct {
	uri  string
	path string
	max  int64
}

func (s *fileStore) URI() string { return s.uri }

func fileInfo(fi os.FileInfo) Info {
	v := fmt.Sprintf("mtime=%d size=%d", fi.ModTime().UnixNano(), fi.Size())
	if id := fileID(fi); id != "" {
		v += " " + id
	}
	return Info{Version: v, Size: fi.Size(), ModTime: fi.ModTime()}
}

func (s *fileStore) wrap(op string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w: %w", op, s.path, ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, s.path, err)
}

// Stat follows symbolic links, so a link switched to another file (the
// way Kubernetes updates a mounted ConfigMap) is a new version.
func (s *fileStore) Stat(ctx context.Context) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return Info{}, s.wrap("stat model", err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat model %s: not a regular file", s.path)
	}
	return fileInfo(fi), nil
}

// Get reads the file; the version is that of the open file, so a rename
// over the path between Stat and Get cannot pair old bytes with a new
// version.
func (s *fileStore) Get(ctx context.Context) (*Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, s.wrap("read model", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, s.wrap("read model", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read model %s: not a regular file", s.path)
	}
	if fi.Size() > s.max {
		return nil, fmt.Errorf("read model %s: %w: %d bytes, limit %d", s.path, ErrTooLarge, fi.Size(), s.max)
	}
	data, err := readCapped(f, s.max, "model "+s.path)
	if err != nil {
		return nil, err
	}
	return &Object{Info: fileInfo(fi), Data: data}, nil
}

// Put writes a temporary file beside the path, syncs it and renames it into
// place: a reader (another process polling the file) sees the old model or
// the new one, never a partial write.
func (s *fileStore) Put(ctx context.Context, data []byte) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	f, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".tmp*")
	if err != nil {
		return Info{}, s.wrap("write model", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return Info{}, s.wrap("write model", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return Info{}, s.wrap("write model", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return Info{}, s.wrap("write model", err)
	}
	if err := f.Close(); err != nil {
		return Info{}, s.wrap("write model", err)
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		return Info{}, s.wrap("write model", err)
	}
	return s.Stat(ctx)
}
