// Package config reads jobfleet's configuration from JOBFLEET_* environment
// variables. Every setting has a documented default (Defaults); Load fills a
// Config from the environment, then Validate checks cross-field rules
// (lease > 2 × heartbeat, visibility ≥ lease, ...) and reports every problem
// at once with the variable to fix.
//
// The same Config serves every service; each reads the parts it needs.
package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
)

// Profiles.
const (
	ProfileLocal = "local" // SQLite, a directory, local processes
	ProfileAWS   = "aws"   // DynamoDB, SQS, S3, ECS
)

// Fleets.
const (
	FleetLocal = "local" // worker processes on this machine
	FleetECS   = "ecs"   // ECS Fargate tasks
)

// BuiltinTypes are the job types the stock worker serves.
var BuiltinTypes = []string{"echo", "exec", "fail", "sleep"}

// Config is every setting, with the environment variable that sets it.
type Config struct {
	Profile  string // JOBFLEET_PROFILE: local (default) or aws
	DataDir  string // JOBFLEET_DATA_DIR: local profile state (default .jobfleet)
	LogLevel string // JOBFLEET_LOG_LEVEL: debug, info (default), warn, error

	HTTPAddr    string   // JOBFLEET_HTTP_ADDR: dispatcher API (default 127.0.0.1:8080)
	APITokens   []string // JOBFLEET_API_TOKENS: comma-separated bearer tokens; required beyond loopback
	MaxInFlight int      // JOBFLEET_MAX_IN_FLIGHT: /v1 requests served at once; more get 429 (default 256)
	WorkerAddr  string   // JOBFLEET_WORKER_ADDR: worker /health and /metrics (default 127.0.0.1:0)
	ReaperAddr  string   // JOBFLEET_REAPER_ADDR: reaper /healthz and /metrics (default 127.0.0.1:8082)

	JobTypes    []string      // JOBFLEET_JOB_TYPES: types the dispatcher accepts (default the built-ins)
	MaxPayload  int           // JOBFLEET_MAX_PAYLOAD: largest payload in bytes (default 10 MiB)
	InlineLimit int           // JOBFLEET_INLINE_LIMIT: payloads/results above this go to the blob store (default 8 KiB)
	MaxAttempts int           // JOBFLEET_MAX_ATTEMPTS: default max_attempts (default 5)
	DurationCap time.Duration // JOBFLEET_DURATION_CAP: longest attempt; default timeout (default 4h)

	Heartbeat   time.Duration // JOBFLEET_HEARTBEAT: lease renewal interval (default 10s)
	Lease       time.Duration // JOBFLEET_LEASE: lease length (default 30s)
	Visibility  time.Duration // JOBFLEET_VISIBILITY: work message visibility timeout (default lease + heartbeat)
	Sweep       time.Duration // JOBFLEET_SWEEP: reaper sweep interval (default 5s)
	ResendAfter time.Duration // JOBFLEET_RESEND_AFTER: first resend deadline of a queued job (default 1m)
	Retention   time.Duration // JOBFLEET_RETENTION: how long terminal jobs are kept (default 168h)
	MaxReceives int           // JOBFLEET_MAX_RECEIVES: work message receives before the DLQ (default 10)
	RetryBase   time.Duration // JOBFLEET_RETRY_BASE: first retry backoff (default 1s)
	RetryMax    time.Duration // JOBFLEET_RETRY_MAX: longest retry backoff (default 1h)

	Concurrency  int           // JOBFLEET_CONCURRENCY: jobs one worker runs at once (default 16)
	IdleTimeout  time.Duration // JOBFLEET_IDLE_TIMEOUT: a worker with no work for this long exits; 0 never (default 60s)
	DrainTimeout time.Duration // JOBFLEET_DRAIN_TIMEOUT: time running jobs get after SIGTERM before hand-back (default 25s)
	ExecAllow    []string      // JOBFLEET_EXEC_ALLOW: commands the exec handler may run (default none)
	WorkerID     string        // JOBFLEET_WORKER_ID: override the worker's identity (default ECS task ARN or host/pid)

	MinWorkers    int           // JOBFLEET_MIN_WORKERS (default 0)
	MaxWorkers    int           // JOBFLEET_MAX_WORKERS (default 4)
	ScaleInterval time.Duration // JOBFLEET_SCALE_INTERVAL: scaler period; it also wakes on new work (default 1s)
	WorkerCommand []string      // JOBFLEET_WORKER_COMMAND: local fleet's worker argv, space-separated (default jobfleet-worker beside the dispatcher)
	StopTimeout   time.Duration // JOBFLEET_STOP_TIMEOUT: SIGTERM → SIGKILL for local workers (default 30s)
	Fleet         string        // JOBFLEET_FLEET: local (processes on this machine) or ecs (default: local in the local profile, ecs in the aws profile)

	// The aws profile's resources. Names default from the prefix. Each may
	// be a name, which bootstrap creates, or an existing resource as AWS
	// names it, which bootstrap leaves alone: a table ARN
	// (arn:aws:dynamodb:<region>:<account>:table/<name>), a queue URL or
	// ARN (arn:aws:sqs:<region>:<account>:<name>), a bucket ARN
	// (arn:aws:s3:::<name>) or an S3 access point ARN. An ARN is how a
	// resource of another account is named; it must be in the region the
	// services run in. A DLQ's default appends -dlq to its queue as given,
	// so a queue URL or ARN defaults its DLQ to the queue beside it.
	ResourcePrefix string // JOBFLEET_RESOURCE_PREFIX (default jobfleet)
	Table          string // JOBFLEET_TABLE: name or ARN (default <prefix>-jobs)
	WorkQueue      string // JOBFLEET_WORK_QUEUE: name, URL or ARN (default <prefix>-work); its DLQ JOBFLEET_WORK_DLQ (default <work>-dlq)
	WorkDLQ        string
	IngressQueue   string // JOBFLEET_INGRESS_QUEUE (default <prefix>-ingress); JOBFLEET_INGRESS_DLQ
	IngressDLQ     string
	EventsQueue    string // JOBFLEET_EVENTS_QUEUE (default <prefix>-events); JOBFLEET_EVENTS_DLQ
	EventsDLQ      string
	Bucket         string // JOBFLEET_BUCKET: name, bucket ARN or access point ARN (default <prefix>-artifacts)
	BlobPrefix     string // JOBFLEET_BLOB_PREFIX: key prefix inside the bucket, to share one (default none)

	// The ECS fleet (JOBFLEET_FLEET=ecs).
	ECSCluster           string   // JOBFLEET_ECS_CLUSTER (default <prefix>)
	ECSTaskDefinition    string   // JOBFLEET_ECS_TASK_DEFINITION: family[:revision] or ARN (default <prefix>-worker)
	ECSSubnets           []string // JOBFLEET_ECS_SUBNETS: comma-separated subnet ids (required for ecs)
	ECSSecurityGroups    []string // JOBFLEET_ECS_SECURITY_GROUPS: comma-separated
	ECSAssignPublicIP    bool     // JOBFLEET_ECS_ASSIGN_PUBLIC_IP: true to give tasks a public IP (default false)
	ECSCapacityProviders []string // JOBFLEET_ECS_CAPACITY_PROVIDERS: e.g. FARGATE_SPOT,FARGATE (default: launch type FARGATE)
	ECSContainer         string   // JOBFLEET_ECS_CONTAINER: the worker container's name in the task definition (default worker)
	// JOBFLEET_ECS_TAGS: key=value,... tags on every worker task (default
	// none; tagging on RunTask needs ecs:TagResource).
	ECSTags map[string]string
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Profile:        ProfileLocal,
		DataDir:        ".jobfleet",
		LogLevel:       "info",
		HTTPAddr:       "127.0.0.1:8080",
		MaxInFlight:    256,
		WorkerAddr:     "127.0.0.1:0",
		ReaperAddr:     "127.0.0.1:8082",
		JobTypes:       BuiltinTypes,
		MaxPayload:     job.DefaultLimits.MaxPayload,
		InlineLimit:    8 << 10,
		MaxAttempts:    job.DefaultLimits.DefaultMaxAttempts,
		DurationCap:    4 * time.Hour,
		Heartbeat:      10 * time.Second,
		Lease:          30 * time.Second,
		Sweep:          5 * time.Second,
		ResendAfter:    job.DefaultPolicy.ResendAfter,
		Retention:      job.DefaultPolicy.Retention,
		MaxReceives:    10,
		RetryBase:      time.Second,
		RetryMax:       time.Hour,
		Concurrency:    16,
		IdleTimeout:    time.Minute,
		DrainTimeout:   25 * time.Second,
		MaxWorkers:     4,
		ScaleInterval:  time.Second,
		StopTimeout:    30 * time.Second,
		ResourcePrefix: "jobfleet",
	}
}

// Load reads the configuration from getenv over the defaults and validates
// it. The error lists every problem, each naming its variable.
func Load(getenv func(string) string) (Config, error) {
	c := Defaults()
	visibilitySet := false
	var errs []error
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	list := func(name string, dst *[]string, sep string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			var out []string
			for _, f := range strings.Split(v, sep) {
				if f = strings.TrimSpace(f); f != "" {
					out = append(out, f)
				}
			}
			*dst = out
		}
	}
	num := func(name string, dst *int) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, err := parseSize(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, err))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) bool {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return false
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			if secs, nerr := strconv.Atoi(v); nerr == nil {
				d, err = time.Duration(secs)*time.Second, nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration like 30s or 5m", name, v))
			return false
		}
		*dst = d
		return true
	}
	str("JOBFLEET_PROFILE", &c.Profile)
	str("JOBFLEET_DATA_DIR", &c.DataDir)
	str("JOBFLEET_LOG_LEVEL", &c.LogLevel)
	str("JOBFLEET_HTTP_ADDR", &c.HTTPAddr)
	list("JOBFLEET_API_TOKENS", &c.APITokens, ",")
	num("JOBFLEET_MAX_IN_FLIGHT", &c.MaxInFlight)
	str("JOBFLEET_WORKER_ADDR", &c.WorkerAddr)
	str("JOBFLEET_REAPER_ADDR", &c.ReaperAddr)
	list("JOBFLEET_JOB_TYPES", &c.JobTypes, ",")
	num("JOBFLEET_MAX_PAYLOAD", &c.MaxPayload)
	num("JOBFLEET_INLINE_LIMIT", &c.InlineLimit)
	num("JOBFLEET_MAX_ATTEMPTS", &c.MaxAttempts)
	dur("JOBFLEET_DURATION_CAP", &c.DurationCap)
	dur("JOBFLEET_HEARTBEAT", &c.Heartbeat)
	dur("JOBFLEET_LEASE", &c.Lease)
	visibilitySet = dur("JOBFLEET_VISIBILITY", &c.Visibility)
	dur("JOBFLEET_SWEEP", &c.Sweep)
	dur("JOBFLEET_RESEND_AFTER", &c.ResendAfter)
	dur("JOBFLEET_RETENTION", &c.Retention)
	num("JOBFLEET_MAX_RECEIVES", &c.MaxReceives)
	dur("JOBFLEET_RETRY_BASE", &c.RetryBase)
	dur("JOBFLEET_RETRY_MAX", &c.RetryMax)
	num("JOBFLEET_CONCURRENCY", &c.Concurrency)
	dur("JOBFLEET_IDLE_TIMEOUT", &c.IdleTimeout)
	dur("JOBFLEET_DRAIN_TIMEOUT", &c.DrainTimeout)
	list("JOBFLEET_EXEC_ALLOW", &c.ExecAllow, ",")
	str("JOBFLEET_WORKER_ID", &c.WorkerID)
	num("JOBFLEET_MIN_WORKERS", &c.MinWorkers)
	num("JOBFLEET_MAX_WORKERS", &c.MaxWorkers)
	dur("JOBFLEET_SCALE_INTERVAL", &c.ScaleInterval)
	list("JOBFLEET_WORKER_COMMAND", &c.WorkerCommand, " ")
	dur("JOBFLEET_STOP_TIMEOUT", &c.StopTimeout)
	str("JOBFLEET_FLEET", &c.Fleet)
	str("JOBFLEET_RESOURCE_PREFIX", &c.ResourcePrefix)
	str("JOBFLEET_TABLE", &c.Table)
	str("JOBFLEET_WORK_QUEUE", &c.WorkQueue)
	str("JOBFLEET_WORK_DLQ", &c.WorkDLQ)
	str("JOBFLEET_INGRESS_QUEUE", &c.IngressQueue)
	str("JOBFLEET_INGRESS_DLQ", &c.IngressDLQ)
	str("JOBFLEET_EVENTS_QUEUE", &c.EventsQueue)
	str("JOBFLEET_EVENTS_DLQ", &c.EventsDLQ)
	str("JOBFLEET_BUCKET", &c.Bucket)
	str("JOBFLEET_BLOB_PREFIX", &c.BlobPrefix)
	str("JOBFLEET_ECS_CLUSTER", &c.ECSCluster)
	str("JOBFLEET_ECS_TASK_DEFINITION", &c.ECSTaskDefinition)
	list("JOBFLEET_ECS_SUBNETS", &c.ECSSubnets, ",")
	list("JOBFLEET_ECS_SECURITY_GROUPS", &c.ECSSecurityGroups, ",")
	if v := strings.TrimSpace(getenv("JOBFLEET_ECS_ASSIGN_PUBLIC_IP")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("JOBFLEET_ECS_ASSIGN_PUBLIC_IP=%q: want true or false", v))
		}
		c.ECSAssignPublicIP = b
	}
	list("JOBFLEET_ECS_CAPACITY_PROVIDERS", &c.ECSCapacityProviders, ",")
	str("JOBFLEET_ECS_CONTAINER", &c.ECSContainer)
	if v := strings.TrimSpace(getenv("JOBFLEET_ECS_TAGS")); v != "" {
		c.ECSTags = map[string]string{}
		for kv := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || strings.TrimSpace(k) == "" {
				errs = append(errs, fmt.Errorf("JOBFLEET_ECS_TAGS=%q: want key=value,key=value", v))
				break
			}
			c.ECSTags[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
	}
	c.resolveNames()
	if !visibilitySet {
		c.Visibility = c.Lease + c.Heartbeat
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// resolveNames fills resource names left empty from the prefix.
func (c *Config) resolveNames() {
	if c.Fleet == "" {
		c.Fleet = FleetLocal
		if c.Profile == ProfileAWS {
			c.Fleet = FleetECS
		}
	}
	p := c.ResourcePrefix
	or := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	or(&c.Table, p+"-jobs")
	or(&c.WorkQueue, p+"-work")
	or(&c.WorkDLQ, c.WorkQueue+"-dlq")
	or(&c.IngressQueue, p+"-ingress")
	or(&c.IngressDLQ, c.IngressQueue+"-dlq")
	or(&c.EventsQueue, p+"-events")
	or(&c.EventsDLQ, c.EventsQueue+"-dlq")
	or(&c.Bucket, p+"-artifacts")
	or(&c.ECSCluster, p)
	or(&c.ECSTaskDefinition, p+"-worker")
	or(&c.ECSContainer, "worker")
}

// parseSize reads an integer with an optional KiB/MiB suffix.
func parseSize(v string) (int, error) {
	mult := 1
	for _, s := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}} {
		if strings.HasSuffix(v, s.suffix) {
			v, mult = strings.TrimSuffix(v, s.suffix), s.mult
			break
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("want an integer")
	}
	return n * mult, nil
}

// Validate checks cross-field rules and ranges; the error lists every
// problem.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Profile != ProfileLocal && c.Profile != ProfileAWS {
		bad("JOBFLEET_PROFILE=%q: want %s or %s", c.Profile, ProfileLocal, ProfileAWS)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("JOBFLEET_LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.Profile == ProfileLocal && c.DataDir == "" {
		bad("JOBFLEET_DATA_DIR is empty")
	}
	for name, addr := range map[string]string{"JOBFLEET_HTTP_ADDR": c.HTTPAddr, "JOBFLEET_WORKER_ADDR": c.WorkerAddr, "JOBFLEET_REAPER_ADDR": c.ReaperAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s=%q: want host:port", name, addr)
		}
	}
	for _, tok := range c.APITokens {
		if len(tok) < 16 {
			bad("JOBFLEET_API_TOKENS: every token must be at least 16 characters")
			break
		}
	}
	for _, t := range c.JobTypes {
		if !job.ValidType(t) {
			bad("JOBFLEET_JOB_TYPES: %q is not a valid type name", t)
		}
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 100000 {
		bad("JOBFLEET_MAX_IN_FLIGHT=%d: want 1..100000", c.MaxInFlight)
	}
	if c.MaxPayload < 1 {
		bad("JOBFLEET_MAX_PAYLOAD must be positive")
	}
	if c.InlineLimit < 0 || c.InlineLimit > 256<<10 {
		bad("JOBFLEET_INLINE_LIMIT=%d: want 0..262144 (records must stay under DynamoDB's 400 KB)", c.InlineLimit)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > job.DefaultLimits.MaxAttempts {
		bad("JOBFLEET_MAX_ATTEMPTS=%d: want 1..%d", c.MaxAttempts, job.DefaultLimits.MaxAttempts)
	}
	if c.DurationCap < time.Second {
		bad("JOBFLEET_DURATION_CAP must be at least 1s")
	}
	if c.Heartbeat <= 0 {
		bad("JOBFLEET_HEARTBEAT must be positive")
	}
	if c.Lease <= 2*c.Heartbeat {
		bad("JOBFLEET_LEASE (%s) must be more than 2 × JOBFLEET_HEARTBEAT (%s), so one missed heartbeat does not lose the lease", c.Lease, c.Heartbeat)
	}
	if c.Visibility < c.Lease {
		bad("JOBFLEET_VISIBILITY (%s) must be at least JOBFLEET_LEASE (%s), so a message is not redelivered while its lease is live", c.Visibility, c.Lease)
	}
	if c.Visibility > 12*time.Hour {
		bad("JOBFLEET_VISIBILITY (%s) is beyond SQS's 12h limit", c.Visibility)
	}
	if c.Sweep <= 0 {
		bad("JOBFLEET_SWEEP must be positive")
	}
	if c.ResendAfter < time.Second {
		bad("JOBFLEET_RESEND_AFTER must be at least 1s")
	}
	if c.Retention < time.Minute {
		bad("JOBFLEET_RETENTION must be at least 1m")
	}
	if c.MaxReceives < 2 || c.MaxReceives > 1000 {
		bad("JOBFLEET_MAX_RECEIVES=%d: want 2..1000", c.MaxReceives)
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		bad("JOBFLEET_RETRY_BASE must be positive and at most JOBFLEET_RETRY_MAX")
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		bad("JOBFLEET_CONCURRENCY=%d: want 1..1000", c.Concurrency)
	}
	if c.IdleTimeout < 0 {
		bad("JOBFLEET_IDLE_TIMEOUT must not be negative")
	}
	if c.DrainTimeout < 0 {
		bad("JOBFLEET_DRAIN_TIMEOUT must not be negative")
	}
	if c.MinWorkers < 0 || c.MaxWorkers < c.MinWorkers || c.MaxWorkers > 10000 {
		bad("JOBFLEET_MIN_WORKERS=%d, JOBFLEET_MAX_WORKERS=%d: want 0 ≤ min ≤ max ≤ 10000", c.MinWorkers, c.MaxWorkers)
	}
	if c.ScaleInterval <= 0 {
		bad("JOBFLEET_SCALE_INTERVAL must be positive")
	}
	if c.StopTimeout <= 0 {
		bad("JOBFLEET_STOP_TIMEOUT must be positive")
	}
	if c.Fleet != FleetLocal && c.Fleet != FleetECS {
		bad("JOBFLEET_FLEET=%q: want %s or %s", c.Fleet, FleetLocal, FleetECS)
	}
	if c.Fleet == FleetECS && c.Profile != ProfileAWS {
		bad("JOBFLEET_FLEET=ecs needs JOBFLEET_PROFILE=aws")
	}
	if !validPrefix(c.ResourcePrefix) {
		bad("JOBFLEET_RESOURCE_PREFIX=%q: want 1-40 lower-case letters, digits or '-', starting with a letter or digit (it names S3 buckets)", c.ResourcePrefix)
	}
	if c.DrainTimeout >= c.StopTimeout {
		bad("JOBFLEET_DRAIN_TIMEOUT (%s) must be shorter than JOBFLEET_STOP_TIMEOUT (%s), so hand-back happens before SIGKILL", c.DrainTimeout, c.StopTimeout)
	}
	if c.Profile == ProfileAWS {
		queue := resourceKind{what: "an SQS queue name, URL or ARN", services: []string{"sqs"}, url: true}
		for _, r := range []struct {
			env, v string
			kind   resourceKind
		}{
			{"JOBFLEET_TABLE", c.Table, resourceKind{what: "a DynamoDB table name or ARN", services: []string{"dynamodb"}}},
			{"JOBFLEET_WORK_QUEUE", c.WorkQueue, queue},
			{"JOBFLEET_WORK_DLQ", c.WorkDLQ, queue},
			{"JOBFLEET_INGRESS_QUEUE", c.IngressQueue, queue},
			{"JOBFLEET_INGRESS_DLQ", c.IngressDLQ, queue},
			{"JOBFLEET_EVENTS_QUEUE", c.EventsQueue, queue},
			{"JOBFLEET_EVENTS_DLQ", c.EventsDLQ, queue},
			{"JOBFLEET_BUCKET", c.Bucket, resourceKind{what: "an S3 bucket name, bucket ARN or access point ARN", services: []string{"s3", "s3-outposts", "s3-object-lambda"}}},
		} {
			if problem := r.kind.problem(r.v); problem != "" {
				bad("%s=%q: want %s; %s", r.env, r.v, r.kind.what, problem)
			}
		}
	}
	return errors.Join(errs...)
}

// resourceKind is what an aws profile resource variable takes.
type resourceKind struct {
	what     string   // for messages
	services []string // the ARN services it takes
	url      bool     // whether it takes a URL (queues)
}

// problem says what is wrong with v as a resource of kind k, or "". It
// checks only the form and service of an ARN, and where a URL is taken:
// the adapters check the rest when they open the resource, naming the
// value.
func (k resourceKind) problem(v string) string {
	switch {
	case strings.HasPrefix(v, "arn:"):
		parts := strings.SplitN(v, ":", 6)
		switch {
		case len(parts) < 6:
			return "an ARN has six parts, arn:<partition>:<service>:<region>:<account-id>:<resource>"
		case !slices.Contains(k.services, parts[2]):
			return fmt.Sprintf("this is an ARN of service %q", parts[2])
		}
	case strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://"):
		if !k.url {
			return "a URL names no such resource"
		}
	}
	return ""
}

// validPrefix: resource names are <prefix>-<what>, and the bucket's must be
// a valid S3 bucket name (lower case, ≤ 63 characters).
func validPrefix(s string) bool {
	if s == "" || len(s) > 40 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Policy returns the job protocol's durations from c.
func (c Config) Policy() job.Policy {
	p := job.DefaultPolicy
	p.Lease = c.Lease
	p.ResendAfter = c.ResendAfter
	p.MaxResendInterval = max(p.MaxResendInterval, c.ResendAfter)
	p.Retention = c.Retention
	return p
}

// Limits returns the submission limits from c (KnownType from JobTypes).
func (c Config) Limits() job.Limits {
	l := job.DefaultLimits
	types := make(map[string]bool, len(c.JobTypes))
	for _, t := range c.JobTypes {
		types[t] = true
	}
	l.KnownType = func(t string) bool { return types[t] }
	l.MaxPayload = c.MaxPayload
	l.DefaultMaxAttempts = c.MaxAttempts
	l.DefaultTimeout = c.DurationCap
	l.MaxTimeout = c.DurationCap
	return l
}

// Loopback reports whether addr (host:port) listens on loopback only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
