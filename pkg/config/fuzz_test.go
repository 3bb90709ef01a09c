package config_test

import (
	"testing"

	"github.com/jobfleet/jobfleet/pkg/config"
)

// FuzzLoad: configuration comes from outside; any values load or fail with
// an error, never a panic, and what loads validates.
func FuzzLoad(f *testing.F) {
	f.Add("30s", "10s", "4", "16KiB", "local", "echo,sleep", "127.0.0.1:8080")
	f.Add("1", "0", "-3", "x", "aws", ",,", ":")
	f.Add("9999999999999h", "1ns", "99999999999999999999", "1M", "", "9bad", "[::1]:80")
	f.Fuzz(func(t *testing.T, lease, heartbeat, concurrency, inline, profile, types, addr string) {
		env := map[string]string{
			"JOBFLEET_LEASE": lease, "JOBFLEET_HEARTBEAT": heartbeat, "JOBFLEET_CONCURRENCY": concurrency,
			"JOBFLEET_INLINE_LIMIT": inline, "JOBFLEET_PROFILE": profile, "JOBFLEET_JOB_TYPES": types,
			"JOBFLEET_HTTP_ADDR": addr, "JOBFLEET_ECS_SUBNETS": "subnet-1",
		}
		c, err := config.Load(func(k string) string { return env[k] })
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config Validate refuses: %v", err)
		}
		if c.Lease <= 2*c.Heartbeat || c.Visibility < c.Lease {
			t.Fatalf("cross-field rules broken: %+v", c)
		}
	})
}
