package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// table is one printed and reported table.
type table struct {
	rank   int // scenario number: the report's order
	title  string
	notes  []string
	header []string
	rows   [][]string
}

func newTable(rank int, title string, header ...string) *table {
	return &table{rank: rank, title: title, header: header}
}

func (tb *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	tb.rows = append(tb.rows, row)
}

func (tb *table) note(format string, args ...any) {
	tb.notes = append(tb.notes, fmt.Sprintf(format, args...))
}

// markdown renders the table as a Markdown section body.
func (tb *table) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", tb.title)
	line := func(cells []string) {
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(tb.header)
	sep := make([]string, len(tb.header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range tb.rows {
		line(r)
	}
	for _, n := range tb.notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}

// goal is one of the goals against what was measured.
type goal struct {
	rank     int
	what     string
	target   string
	measured string
	met      bool
}

var report struct {
	mu     sync.Mutex
	tables []*table
	goals  []goal
}

// publish prints tb and keeps it for the report.
func publish(t *testing.T, tb *table) {
	t.Helper()
	report.mu.Lock()
	report.tables = append(report.tables, tb)
	report.mu.Unlock()
	fmt.Printf("\n%s\n", tb.markdown())
}

func addGoal(g goal) {
	report.mu.Lock()
	defer report.mu.Unlock()
	report.goals = append(report.goals, g)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// machine describes the computer and how busy it was.
type machine struct {
	at      time.Time
	cpus    int
	model   string
	memory  string
	loadavg string
	// fsync is the median time of a 4 KiB write and fsync in the temporary
	// directory, where the scenarios keep their data: what a SQLite commit
	// (synchronous=FULL) waits for at least.
	fsync time.Duration
}

func readMachine() machine {
	m := machine{at: time.Now().UTC(), cpus: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			var kb int64
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.loadavg = strings.Join(f[:3], " ")
		}
	}
	m.fsync = fsyncTime(100)
	return m
}

// fsyncTime is the median of n synchronous 4 KiB writes to a new file in
// the temporary directory (0 if that fails).
func fsyncTime(n int) time.Duration {
	f, err := os.CreateTemp("", "jobfleet-bench-fsync-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var d dist
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i)*4096); err != nil {
			return 0
		}
		if err := f.Sync(); err != nil {
			return 0
		}
		d = append(d, time.Since(start))
	}
	return d.pct(0.5)
}

// commit names the checked-out commit, "+dirty" when tracked files differ
// from it.
func commit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

const reportHeader = `# Benchmarks

` + "`make bench`" + ` appends a section here for each run (e2e/bench; the package doc says what
each scenario measures and how). The newest run is at the end.
`

// writeReport appends a dated section with every table to path.
func writeReport(path string, before, after machine) error {
	report.mu.Lock()
	defer report.mu.Unlock()
	var b strings.Builder
	if _, err := os.Stat(path); os.IsNotExist(err) {
		b.WriteString(reportHeader)
	}
	fmt.Fprintf(&b, "\n## %s · commit %s · -size=%s\n\n", before.at.Format("2006-01-02 15:04 MST"), commit(), *flagSize)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, %s/%s, %s. Load average (1, 5, 15 min) %s at the start, %s at the end",
		before.cpus, before.model, before.memory, runtime.GOOS, runtime.GOARCH, runtime.Version(), before.loadavg, after.loadavg)
	fmt.Fprintf(&b, "; the run took %s. A 4 KiB write + fsync in the data directory's file system took %s (median of 100) at the start, %s at the end.\n",
		after.at.Sub(before.at).Round(time.Second), ms(before.fsync), ms(after.fsync))
	if g := report.goals; len(g) > 0 {
		slices.SortStableFunc(g, func(a, b goal) int { return a.rank - b.rank })
		gt := newTable(0, "Goals", "goal", "target", "measured", "met")
		for _, x := range g {
			gt.add(x.what, x.target, x.measured, yesNo(x.met))
		}
		b.WriteString("\n" + gt.markdown())
	}
	tables := slices.Clone(report.tables)
	slices.SortStableFunc(tables, func(a, b *table) int { return a.rank - b.rank })
	for _, tb := range tables {
		b.WriteString("\n" + tb.markdown())
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
