package invariant

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
)

// Rule names a hard invariant.
type Rule string

// The rules Check enforces (see the package doc).
const (
	Lost            Rule = "lost"
	Fencing         Rule = "fencing"
	DoubleTerminal  Rule = "double terminal"
	TerminalChanged Rule = "terminal changed"
	Dedup           Rule = "dedup"
	Unanswered      Rule = "unanswered"
)

// Rules lists every rule, in the order reports print them.
var Rules = []Rule{Lost, Fencing, DoubleTerminal, TerminalChanged, Dedup, Unanswered}

// Violation is one broken invariant.
type Violation struct {
	Rule   Rule
	Job    string
	Seq    int64 // the event at which it was found (0: at the end)
	Detail string
}

func (v Violation) String() string {
	at := "at end"
	if v.Seq > 0 {
		at = fmt.Sprintf("at event %d", v.Seq)
	}
	return fmt.Sprintf("%s: job %s %s: %s", v.Rule, v.Job, at, v.Detail)
}

// Recovery is the time from a worker's death to each job it held running
// again (its next attempt starting).
type Recovery struct {
	Samples       int
	P50, P99, Max time.Duration
	// Settled counts jobs of dead workers that reached a terminal state
	// without running again (failed when their attempts ran out, or
	// cancelled); Waiting counts those still waiting at the end.
	Settled, Waiting int
}

// Report is what Check found.
type Report struct {
	End time.Time

	Jobs       int // distinct jobs acknowledged to a producer
	Terminal   int // of those, how many reached a terminal state
	Pending    int // not terminal at the end with no worker alive (not a violation)
	Rejected   int // submissions refused
	Created    int // job records stored
	Attempts   int // attempts started
	Writes     int // conditional writes accepted
	Refused    int // conditional writes refused (lost races)
	DeadLetter int // dead letters recorded

	// Executions counts handler runs that completed with success;
	// DuplicateExecutions those beyond the first for the same job.
	Executions, DuplicateExecutions int

	Recovery Recovery

	Violations []Violation
}

// Count returns how many violations of rule the report holds.
func (r *Report) Count(rule Rule) int {
	n := 0
	for _, v := range r.Violations {
		if v.Rule == rule {
			n++
		}
	}
	return n
}

// DuplicatesPer10k is the duplicate executions per 10,000 acknowledged jobs.
func (r *Report) DuplicatesPer10k() float64 {
	if r.Jobs == 0 {
		return 0
	}
	return float64(r.DuplicateExecutions) * 10000 / float64(r.Jobs)
}

// Err returns nil when no hard invariant was broken, else an error naming
// the count of each broken rule and the first violation.
func (r *Report) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	var parts []string
	for _, rule := range Rules {
		if n := r.Count(rule); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, rule))
		}
	}
	return errors.New("invariants broken: " + strings.Join(parts, ", ") + "; first: " + r.Violations[0].String())
}

// maxExamples is how many violations of each rule String prints.
const maxExamples = 3

// String summarizes the report: the counts, the measurements, and a few
// violations of each broken rule.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d jobs (%d terminal, %d pending), %d rejected, %d created, %d attempts, %d writes (%d refused), %d dead letters; ",
		r.Jobs, r.Terminal, r.Pending, r.Rejected, r.Created, r.Attempts, r.Writes, r.Refused, r.DeadLetter)
	fmt.Fprintf(&b, "%d executions, %d duplicate (%.1f per 10k jobs); ", r.Executions, r.DuplicateExecutions, r.DuplicatesPer10k())
	rc := r.Recovery
	fmt.Fprintf(&b, "recovery after worker death: %d samples, p50 %s, p99 %s, max %s, %d settled, %d waiting",
		rc.Samples, rc.P50, rc.P99, rc.Max, rc.Settled, rc.Waiting)
	if len(r.Violations) == 0 {
		b.WriteString("; no violations")
		return b.String()
	}
	for _, rule := range Rules {
		n := 0
		for _, v := range r.Violations {
			if v.Rule != rule {
				continue
			}
			if n == 0 {
				fmt.Fprintf(&b, "\n%d × %s", r.Count(rule), rule)
			}
			if n < maxExamples {
				b.WriteString("\n  " + v.String())
			}
			n++
		}
	}
	return b.String()
}

// jobState is what Check knows of one job while it replays the history.
type jobState struct {
	id      string
	acked   bool
	runAt   time.Time
	created bool
	key     string

	status  job.Status // after the last accepted write or observation
	attempt int        // newest started attempt
	owners  map[int]string

	terminal       bool
	terminalStatus job.Status
	terminalResult string
	terminalSeq    int64

	successes map[int]bool // attempts whose handler completed with success

	// deadOwner and deadAt: the job's owner died at deadAt while it ran;
	// the next start measures the recovery.
	deadOwner string
	deadAt    time.Time
}

type checker struct {
	rep      Report
	jobs     map[string]*jobState
	order    []string          // job ids in order of first appearance
	keys     map[string]string // active key → job id holding it
	alive    map[string]bool   // workers up
	workers  bool              // any WorkerUp event seen
	recovery []time.Duration
}

func (c *checker) job(id string) *jobState {
	s, ok := c.jobs[id]
	if !ok {
		s = &jobState{id: id, owners: map[int]string{}}
		c.jobs[id] = s
		c.order = append(c.order, id)
	}
	return s
}

func (c *checker) violate(rule Rule, id string, seq int64, format string, args ...any) {
	c.rep.Violations = append(c.rep.Violations, Violation{Rule: rule, Job: id, Seq: seq, Detail: fmt.Sprintf(format, args...)})
}

// Check replays h (in Seq order) and reports every broken invariant and the
// measurements; end is when the run ended (jobs due after it are not lost).
// It is a pure function of its arguments.
func Check(h History, end time.Time) Report {
	events := slices.Clone(h)
	slices.SortStableFunc(events, func(a, b Event) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	c := &checker{jobs: map[string]*jobState{}, keys: map[string]string{}, alive: map[string]bool{}}
	c.rep.End = end
	for _, e := range events {
		c.apply(e)
	}
	c.finish(end)
	return c.rep
}

func (c *checker) apply(e Event) {
	switch e.Kind {
	case Submitted:
		s := c.job(e.Job)
		if !s.acked {
			s.acked = true
			s.runAt = e.RunAt
			c.rep.Jobs++
		}
		if !s.created {
			// Without store-side events, the acknowledgement is the
			// creation as far as dedup can tell.
			c.create(s, e)
		}
	case Rejected:
		c.rep.Rejected++
		if strings.TrimSpace(e.Reason) == "" {
			c.violate(Unanswered, e.Job, e.Seq, "a submission was refused without a reason")
		}
	case Created:
		c.rep.Created++
		c.create(c.job(e.Job), e)
	case Write:
		c.write(e)
	case Started:
		c.start(c.job(e.Job), e, e.Attempt)
	case Executed:
		if e.Outcome != job.OutcomeSucceeded {
			return
		}
		s := c.job(e.Job)
		if s.successes == nil {
			s.successes = map[int]bool{}
		}
		if s.successes[e.Attempt] {
			return // the same execution recorded twice
		}
		s.successes[e.Attempt] = true
		c.rep.Executions++
		if len(s.successes) > 1 {
			c.rep.DuplicateExecutions++
		}
	case Observed:
		c.observe(c.job(e.Job), e)
	case DeadLetter:
		c.rep.DeadLetter++
		if strings.TrimSpace(e.Reason) == "" {
			c.violate(Unanswered, e.Job, e.Seq, "a message was dead-lettered without a reason")
		}
	case WorkerUp:
		c.workers = true
		c.alive[e.Owner] = true
	case WorkerDown:
		c.workers = true
		delete(c.alive, e.Owner)
		for _, id := range c.order {
			s := c.jobs[id]
			if s.status == job.Running && s.owners[s.attempt] == e.Owner && s.deadOwner == "" {
				s.deadOwner, s.deadAt = e.Owner, e.Time
			}
		}
	}
}

// create records that s exists (with its key claimed).
func (c *checker) create(s *jobState, e Event) {
	if s.created {
		return
	}
	s.created = true
	s.key = e.Key
	if s.status == job.None {
		s.status = e.Status
		if s.status == job.None {
			s.status = job.Queued
		}
	}
	if s.runAt.IsZero() {
		s.runAt = e.RunAt
	}
	if e.Key == "" || s.terminal {
		return
	}
	if holder, ok := c.keys[e.Key]; ok && holder != s.id {
		c.violate(Dedup, s.id, e.Seq, "created with key %q while job %s holding it is still active", e.Key, holder)
	}
	c.keys[e.Key] = s.id
}

// release frees s's key when s holds it.
func (c *checker) release(s *jobState) {
	if s.key != "" && c.keys[s.key] == s.id {
		delete(c.keys, s.key)
	}
}

// start records that attempt of s started with e.Owner.
func (c *checker) start(s *jobState, e Event, attempt int) {
	if owner, ok := s.owners[attempt]; ok {
		if owner == e.Owner {
			return // the same start recorded twice
		}
		c.violate(Fencing, s.id, e.Seq, "attempt %d started twice: by %s and by %s", attempt, owner, e.Owner)
	} else if attempt <= s.attempt {
		c.violate(Fencing, s.id, e.Seq, "attempt %d started by %s after attempt %d", attempt, e.Owner, s.attempt)
	}
	c.rep.Attempts++
	s.owners[attempt] = e.Owner
	s.attempt = max(s.attempt, attempt)
	if s.deadOwner != "" && s.deadOwner != e.Owner {
		c.recovery = append(c.recovery, e.Time.Sub(s.deadAt))
		s.deadOwner = ""
	}
}

func (c *checker) write(e Event) {
	s := c.job(e.Job)
	if !e.Accepted {
		c.rep.Refused++
		return
	}
	c.rep.Writes++
	if s.terminal {
		c.violate(TerminalChanged, s.id, e.Seq, "%s accepted after the job was %s (event %d): now %s",
			e.Event, s.terminalStatus, s.terminalSeq, e.Status)
	}
	switch e.Event {
	case job.EventStart, job.EventTakeover:
		if e.Attempt < s.attempt {
			c.violate(Fencing, s.id, e.Seq, "%s fenced on attempt %d accepted after attempt %d started", e.Event, e.Attempt, s.attempt)
		}
		c.start(s, e, e.Attempt+1)
	default:
		if s.attempt > 0 && e.Attempt < s.attempt {
			c.violate(Fencing, s.id, e.Seq, "%s by %q fenced on attempt %d accepted after attempt %d started",
				e.Event, e.Owner, e.Attempt, s.attempt)
		}
		if e.Owner != "" {
			if owner, ok := s.owners[e.Attempt]; ok && owner != e.Owner {
				c.violate(Fencing, s.id, e.Seq, "%s by %s accepted for attempt %d, which %s started", e.Event, e.Owner, e.Attempt, owner)
			}
		}
	}
	if e.Status != job.None {
		s.status = e.Status
	}
	if e.Status.Terminal() {
		if s.terminal {
			c.violate(DoubleTerminal, s.id, e.Seq, "%s wrote %s after %s was written at event %d", e.Event, e.Status, s.terminalStatus, s.terminalSeq)
			return
		}
		c.settle(s, e)
	}
}

// settle records that s became terminal at e.
func (c *checker) settle(s *jobState, e Event) {
	s.terminal = true
	s.status = e.Status
	s.terminalStatus, s.terminalResult, s.terminalSeq = e.Status, e.Result, e.Seq
	if s.deadOwner != "" {
		c.rep.Recovery.Settled++ // its owner died and it ended without running again
		s.deadOwner = ""
	}
	c.release(s)
}

func (c *checker) observe(s *jobState, e Event) {
	if !s.terminal {
		if e.Status.Terminal() {
			c.settle(s, e) // known from a read only (no store-side events)
		}
		return
	}
	if e.Status != s.terminalStatus {
		c.violate(TerminalChanged, s.id, e.Seq, "read as %s after %s was written at event %d", e.Status, s.terminalStatus, s.terminalSeq)
		return
	}
	if e.Result != s.terminalResult {
		c.violate(TerminalChanged, s.id, e.Seq, "%s result reads as %q, written as %q at event %d", e.Status, e.Result, s.terminalResult, s.terminalSeq)
	}
}

func (c *checker) finish(end time.Time) {
	workersAlive := !c.workers || len(c.alive) > 0
	for _, id := range c.order {
		s := c.jobs[id]
		if s.deadOwner != "" {
			c.rep.Recovery.Waiting++
		}
		if !s.acked {
			continue
		}
		if s.terminal {
			c.rep.Terminal++
			continue
		}
		if s.runAt.After(end) {
			continue // not due yet
		}
		if !workersAlive {
			c.rep.Pending++
			continue
		}
		c.violate(Lost, id, 0, "acknowledged, %s at the end (attempt %d)", orUnknown(s.status), s.attempt)
	}
	c.rep.Recovery.Samples = len(c.recovery)
	if len(c.recovery) > 0 {
		d := slices.Clone(c.recovery)
		slices.Sort(d)
		c.rep.Recovery.P50 = quantile(d, 0.50)
		c.rep.Recovery.P99 = quantile(d, 0.99)
		c.rep.Recovery.Max = d[len(d)-1]
	}
}

func orUnknown(s job.Status) string {
	if s == job.None {
		return "status unknown"
	}
	return string(s)
}

// quantile returns the q-quantile of sorted d (nearest rank).
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}
