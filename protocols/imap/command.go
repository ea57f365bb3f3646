package imap

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/stepgate/stepgate/internal/relay"
)

// maxLine caps a pre-login command, literals included (a literal alone
// is capped at relay.MaxCredential): nothing a client legitimately sends
// before it is signed in comes close. Over either, relay.ErrTooLong ends
// the connection.
const maxLine = 8 << 10

// syntaxError is a command stepgate cannot parse; it answers BAD.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func badSyntax(format string, args ...any) error {
	return &syntaxError{fmt.Sprintf(format, args...)}
}

// command is one parsed pre-login command.
type command struct {
	tag  string
	name string // upper case
	args []arg
}

// arg is one argument: an atom, a string (quoted or literal), or a
// parenthesised list (only ID has one before login).
type arg struct {
	atom   string
	str    string
	isStr  bool
	list   []arg
	isList bool
	isNil  bool
}

// text is the argument as a string: astring semantics (atom or string).
func (a arg) text() (string, bool) {
	switch {
	case a.isStr:
		return a.str, true
	case a.atom != "" && !a.isList && !a.isNil:
		return a.atom, true
	}
	return "", false
}

// commandReader reads commands from a client. continueLiteral is called
// for a synchronising literal, to send the "+" continuation request.
type commandReader struct {
	br              *bufio.Reader
	continueLiteral func() error
}

func (r *commandReader) readLine(budget *int) ([]byte, error) {
	return relay.ReadLine(r.br, budget)
}

// read reads and parses one command.
func (r *commandReader) read() (*command, error) {
	budget := maxLine
	line, err := r.readLine(&budget)
	if err != nil {
		return nil, err
	}
	p := &parser{r: r, line: line, budget: &budget}
	c := &command{}
	if c.tag, err = p.tag(); err != nil {
		return c, err
	}
	if err := p.sp(); err != nil {
		return c, err
	}
	name, err := p.atom()
	if err != nil {
		return c, err
	}
	c.name = upper(name)
	for !p.end() {
		if err := p.sp(); err != nil {
			return c, err
		}
		a, err := p.arg(0)
		if err != nil {
			return c, err
		}
		c.args = append(c.args, a)
	}
	return c, nil
}

type parser struct {
	r      *commandReader
	line   []byte
	pos    int
	budget *int
}

func (p *parser) end() bool { return p.pos >= len(p.line) }

func (p *parser) sp() error {
	if p.end() || p.line[p.pos] != ' ' {
		return badSyntax("expected a space")
	}
	p.pos++
	return nil
}

// atomChar: any CHAR except atom-specials (RFC 3501 9).
func atomChar(b byte) bool {
	if b <= 0x20 || b >= 0x7f {
		return false
	}
	switch b {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func (p *parser) atom() (string, error) {
	start := p.pos
	for !p.end() && atomChar(p.line[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", badSyntax("expected an atom")
	}
	return string(p.line[start:p.pos]), nil
}

func (p *parser) tag() (string, error) {
	start := p.pos
	for !p.end() && atomChar(p.line[p.pos]) && p.line[p.pos] != '+' {
		p.pos++
	}
	if p.pos == start {
		return "", badSyntax("expected a tag")
	}
	return string(p.line[start:p.pos]), nil
}

func (p *parser) arg(depth int) (arg, error) {
	if p.end() {
		return arg{}, badSyntax("expected an argument")
	}
	switch p.line[p.pos] {
	case '"':
		s, err := p.quoted()
		return arg{str: s, isStr: true}, err
	case '{':
		s, err := p.literal()
		return arg{str: s, isStr: true}, err
	case '(':
		if depth > 2 {
			return arg{}, badSyntax("lists nested too deep")
		}
		p.pos++
		l := arg{isList: true}
		for !p.end() && p.line[p.pos] != ')' {
			if len(l.list) > 0 {
				if err := p.sp(); err != nil {
					return arg{}, err
				}
			}
			a, err := p.arg(depth + 1)
			if err != nil {
				return arg{}, err
			}
			l.list = append(l.list, a)
		}
		if p.end() {
			return arg{}, badSyntax("unterminated list")
		}
		p.pos++
		return l, nil
	}
	a, err := p.atom()
	if err != nil {
		return arg{}, err
	}
	if upper(a) == "NIL" {
		return arg{isNil: true}, nil
	}
	return arg{atom: a}, nil
}

func (p *parser) quoted() (string, error) {
	p.pos++ // opening quote
	var s []byte
	for !p.end() {
		b := p.line[p.pos]
		p.pos++
		switch b {
		case '"':
			return string(s), nil
		case '\\':
			if p.end() || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return "", badSyntax("bad escape in a quoted string")
			}
			s = append(s, p.line[p.pos])
			p.pos++
		default:
			s = append(s, b)
		}
	}
	// A quoted string cannot hold CR or LF (RFC 3501 9, QUOTED-CHAR).
	return "", badSyntax("unterminated quoted string")
}

// literal reads {n} or {n+} at the end of the line, then n bytes, then
// the rest of the command from the next line.
func (p *parser) literal() (string, error) {
	close := -1
	for i := p.pos; i < len(p.line); i++ {
		if p.line[i] == '}' {
			close = i
			break
		}
	}
	if close != len(p.line)-1 {
		return "", badSyntax("a literal must end the line")
	}
	spec := p.line[p.pos+1 : close]
	sync := true
	if len(spec) > 0 && spec[len(spec)-1] == '+' {
		sync, spec = false, spec[:len(spec)-1]
	}
	n, err := strconv.ParseUint(string(spec), 10, 32)
	if err != nil || len(spec) == 0 || spec[0] == '+' || spec[0] == '-' {
		return "", badSyntax("bad literal length")
	}
	if n > relay.MaxCredential || int(n) > *p.budget {
		return "", relay.ErrTooLong
	}
	if sync {
		if err := p.r.continueLiteral(); err != nil {
			return "", err
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.r.br, buf); err != nil {
		return "", err
	}
	*p.budget -= int(n)
	rest, err := p.r.readLine(p.budget)
	if err != nil {
		return "", err
	}
	p.line, p.pos = rest, 0
	return string(buf), nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
