//go:build unix

package modelstore

import (
	"fmt"
	"os"
	"syscall"
)

// fileID is the device and inode: a file renamed over the path is a new
// version even when it kept the old modification time and size (cp -p,
// rsync -t).
func fileID(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("dev=%d ino=%d", st.Dev, st.Ino)
	}
	return ""
}
