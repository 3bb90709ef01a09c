// Package freeze stops a process with SIGSTOP at a moment it holds no
// write lock on a file of a data directory.
//
// A process of the local profile frozen inside a SQLite write transaction
// keeps its lock: every other process then waits for SQLite's busy timeout
// (30 s) and fails, the reaper included, so nothing can recover its jobs by
// their leases until it dies. Tests that freeze a worker to exercise lease
// expiry use Stop, which undoes such stops (SIGCONT) and tries again once
// the lock is released.
package freeze

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stop sends pid SIGSTOP at a moment it holds no write lock on a file of
// dir, and returns when that stop was sent and how many earlier stops were
// undone.
func Stop(pid int, dir string) (at time.Time, undone int, err error) {
	for ; ; undone++ {
		at = time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return at, undone, err
		}
		if err := until(5*time.Second, func() (bool, error) {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return false, err
			}
			// pid (comm) state ...: the state follows the last ')'.
			i := strings.LastIndexByte(string(st), ')')
			return i >= 0 && i+2 < len(st) && st[i+2] == 'T', nil
		}); err != nil {
			return at, undone, fmt.Errorf("process %d did not stop: %w", pid, err)
		}
		held, err := HoldsWriteLock(pid, dir)
		if err != nil || !held {
			return at, undone, err
		}
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return at, undone, err
		}
		if err := until(10*time.Second, func() (bool, error) {
			held, err := HoldsWriteLock(pid, dir)
			return !held, err
		}); err != nil {
			return at, undone, fmt.Errorf("process %d kept its write lock: %w", pid, err)
		}
	}
}

// HoldsWriteLock reports whether pid holds a POSIX write lock on a file of
// dir (/proc/locks: "N: POSIX ADVISORY WRITE <pid> <major>:<minor>:<inode>
// <start> <end>"; waiters are marked "->").
func HoldsWriteLock(pid int, dir string) (bool, error) {
	inodes := map[string]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				inodes[strconv.FormatUint(st.Ino, 10)] = true
			}
		}
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false, err
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) < 6 || f[1] == "->" || f[1] != "POSIX" || f[3] != "WRITE" || f[4] != strconv.Itoa(pid) {
			continue
		}
		dev := strings.Split(f[5], ":")
		if inodes[dev[len(dev)-1]] {
			return true, nil
		}
	}
	return false, nil
}

// until polls cond every 5 ms for up to d.
func until(d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
