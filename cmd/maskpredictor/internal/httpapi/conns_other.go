//go:build !unix

package httpapi

// fdLimit is unknown off Unix: the default cap applies.
func fdLimit() uint64 { return 0 }
