// Package procs finds the processes a test started, by their environment,
// from /proc (Linux).
package procs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// WithEnv lists the processes whose environment holds the setting kv
// ("NAME=value").
func WithEnv(kv string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && (bytes.HasPrefix(env, []byte(kv+"\x00")) || bytes.Contains(env, []byte("\x00"+kv+"\x00"))) {
			out = append(out, pid)
		}
	}
	return out
}

// Runs reports whether pid's command line holds s (e.g. a binary's name).
func Runs(pid int, s string) bool {
	cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return bytes.Contains(cmdline, []byte(s))
}
