package queue

import (
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Config is a queue's configuration, as the adapters that create queues
// take it (SQS's queue attributes): the local adapters and sqsqueue share
// its rules through Normalize.
type Config struct {
	// Visibility is the default visibility timeout: whole seconds (rounded
	// up) up to MaxVisibility; 0 means DefaultVisibility.
	Visibility time.Duration
	// DeadLetter names the dead-letter queue, which must exist; "" means
	// none.
	DeadLetter string
	// MaxReceives is how many receives a message gets before it moves to
	// DeadLetter: 1..MaxMaxReceives with DeadLetter, 0 without.
	MaxReceives int
}

// DefaultVisibility is SQS's default visibility timeout.
const DefaultVisibility = 30 * time.Second

// MaxMaxReceives is the largest Config.MaxReceives SQS accepts.
const MaxMaxReceives = 1000

// ValidName reports whether name is a valid (standard) queue name: 1-80
// letters, digits, '-' and '_'.
func ValidName(name string) bool {
	if name == "" || len(name) > 80 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Normalize returns cfg for the queue name with its defaults filled in and
// the visibility rounded up to whole seconds, or errcode.InvalidArgument
// naming what is wrong.
func (cfg Config) Normalize(name string) (Config, error) {
	if cfg.Visibility == 0 {
		cfg.Visibility = DefaultVisibility
	}
	cfg.Visibility = Seconds(cfg.Visibility)
	switch {
	case !ValidName(name):
		return cfg, errcode.New(errcode.InvalidArgument, "create queue: invalid name %q (1-80 letters, digits, - and _)", name)
	case cfg.Visibility < 0 || cfg.Visibility > MaxVisibility:
		return cfg, errcode.New(errcode.InvalidArgument, "create queue %s: visibility %s is outside 0..%s", name, cfg.Visibility, MaxVisibility)
	case cfg.DeadLetter == "" && cfg.MaxReceives != 0:
		return cfg, errcode.New(errcode.InvalidArgument, "create queue %s: MaxReceives without a dead-letter queue", name)
	case cfg.DeadLetter != "" && (cfg.MaxReceives < 1 || cfg.MaxReceives > MaxMaxReceives):
		return cfg, errcode.New(errcode.InvalidArgument, "create queue %s: MaxReceives %d is outside 1..%d", name, cfg.MaxReceives, MaxMaxReceives)
	case cfg.DeadLetter == name:
		return cfg, errcode.New(errcode.InvalidArgument, "create queue %s: a queue cannot be its own dead-letter queue", name)
	}
	return cfg, nil
}
