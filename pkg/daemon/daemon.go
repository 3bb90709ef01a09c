// Package daemon is the plumbing the three service binaries share: a JSON
// logger, an HTTP server that reports the address it bound and shuts down
// gracefully, and signal handling that separates "stop taking work" from
// "stop now".
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Logger returns a JSON logger on stderr at level (debug, info, warn,
// error), with the service name on every line.
func Logger(service, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("service", service)
}

// Server is an HTTP server that is already listening.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Listen binds addr and serves h on it in the background. srv, when not
// nil, supplies the timeouts and limits; its Handler is replaced by h.
func Listen(addr string, h http.Handler, srv *http.Server) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if srv == nil {
		srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	}
	srv.Handler = h
	s := &Server{srv: srv, ln: ln, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on (the real port when addr
// asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting connections and waits up to timeout for requests
// in flight.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}

// Signals returns two contexts: soft ends at the first SIGTERM or SIGINT
// (stop taking work, drain), hard at the second (stop now). stop releases
// the signal handlers.
func Signals(parent context.Context) (soft, hard context.Context, stop func()) {
	soft, cancelSoft := context.WithCancel(parent)
	hard, cancelHard := context.WithCancel(context.WithoutCancel(parent))
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case <-ch:
				n++
				cancelSoft()
				if n >= 2 {
					cancelHard()
				}
			}
		}
	}()
	return soft, hard, func() {
		signal.Stop(ch)
		close(done)
		cancelSoft()
		cancelHard()
	}
}
