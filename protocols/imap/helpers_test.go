package imap

import (
	"context"
	"encoding/base64"

	"github.com/stepgate/stepgate/internal/listener"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// serve runs one connection of s (the relay's shape: a listener.Conn).
func serve(s *Server) func(context.Context, listener.Conn) {
	return func(ctx context.Context, c listener.Conn) { newConn(s, c.Raw, c.Net, c.ImplicitTLS).serve(ctx) }
}
