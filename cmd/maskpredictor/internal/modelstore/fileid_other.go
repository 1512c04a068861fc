//go:build !unix

package modelstore

import "os"

func fileID(os.FileInfo) string { return "" }
