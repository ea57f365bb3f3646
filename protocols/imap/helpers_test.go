package imap

import (
	"context"
	"encoding/base64"

	"github.com/stepgate/stepgate/internal/listener"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// serve runs one connection of s.
func serve(s *Server) func(context.Context, listener.Conn) { return s.Relay().Serve }
