package testenv

import (
	"context"
	"testing"
)

// Server is a front end as the tests start one: sockets opened by Listen,
// served until the context ends.
type Server interface {
	Listen() error
	Serve(ctx context.Context) error
}

// Serve opens s's sockets and serves them until t ends; Serve must then
// return nil.
func Serve(t testing.TB, s Server) {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}
