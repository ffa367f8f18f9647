//go:build !linux

package procmem

// DropStartupPages does nothing outside Linux.
func DropStartupPages() (int, error) { return 0, nil }
