package relay

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"time"
)

// splice copies bytes both ways until either side ends, the server shuts
// down, or the session is revoked. Nothing is parsed any more.
func (c *Conn) splice(ctx context.Context, d Dialogue, log *slog.Logger) {
	var revoked <-chan struct{}
	if c.signedIn.Session != nil {
		revoked = c.signedIn.Session.Revoked()
	}
	c.raw.SetDeadline(time.Time{})
	up := c.up
	done := make(chan struct{}, 2)
	go func() {
		pipe(up.nc, c.br, c.nc) // what the client pipelined after its login, then the rest
		done <- struct{}{}
	}()
	go func() {
		pipe(c.nc, up.r, up.nc)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-revoked:
		log.Info("connection closed: its session was revoked")
		d.Hangup(Revoked)
	case <-ctx.Done():
	}
	c.closeAll()
	<-done
}

// pipe copies what br holds already, then src straight to dst: between
// two plain TCP connections io.Copy then moves the data in the kernel
// (splice(2)) instead of through a user-space buffer.
func pipe(dst io.Writer, br *bufio.Reader, src io.Reader) {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := dst.Write(b); err != nil {
			return
		}
		br.Discard(n)
	}
	io.Copy(dst, src)
}
