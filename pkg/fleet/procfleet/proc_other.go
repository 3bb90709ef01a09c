//go:build !linux

package procfleet

import (
	"errors"
	"io/fs"
	"syscall"
)

// procInfo reports whether pid exists. Without /proc there is no start
// time to guard against a reused pid: start is 0 ("unknown").
func procInfo(pid int) (start uint64, state byte, err error) {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, 0, fs.ErrNotExist
	}
	return 0, 'S', nil
}

func bootID() string { return "" }
