// Package atomicfile implements durable writes of small files (the admin token, the console password hash):
// the content goes to a temporary file in the target's directory, is fsynced, and is then linked or renamed
// into place and the directory fsynced, so that a reader or a crash sees the old file or the whole new one,
// never a part.
//
// It deliberately does not serve the spool, which commits bodies in groups with one directory fsync per
// group (see queue).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Create writes data to a new file at path with permissions perm. When path already exists it fails with an
// error wrapping fs.ErrExist and leaves the file alone, so that concurrent creators agree on the first one.
func Create(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Link)
}

// Replace writes data to path with permissions perm, replacing any file there.
func Replace(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// write puts data in a synced temporary file, then place (link or rename) moves it to path; the directory
// is synced last so that the new name survives a crash.
func write(path string, data []byte, perm fs.FileMode, place func(oldpath, newpath string) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+"-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a link, the temporary name; after a rename, nothing
	_, err = tmp.Write(data)
	if err == nil {
		// CreateTemp uses 0600 whatever the umask; Chmod sets what the caller asked for.
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := place(tmp.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err // the temporary name means nothing to the caller
		}
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: %s: directory: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs directory dir, making the names created or removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
