package relay

import (
	"bufio"
	"errors"
)

// ErrTooLong is a line over its budget: the connection ends, since
// nothing legitimate sent before login comes close.
var ErrTooLong = errors.New("command too long")

// ReadLine reads up to and excluding CRLF (a bare LF is accepted), with
// budget bytes left for the whole command; what it reads is taken off
// the budget. It never holds more than the budget, whatever the client
// sends.
func ReadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > *budget {
			return nil, ErrTooLong
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(line) >= *budget {
			// The whole budget read and still no line end.
			return nil, ErrTooLong
		}
	}
	*budget -= len(line)
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
