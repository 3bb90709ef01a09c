package procfleet

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
)

// procInfo returns the start time of process pid (in clock ticks after
// boot, field 22 of /proc/<pid>/stat) and its state (field 3: 'R', 'S',
// 'Z' for a zombie, ...). A pid that does not exist is fs.ErrNotExist.
func procInfo(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// so count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// bootID identifies this boot, so that pids recorded before a reboot are
// not mistaken for live processes.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
