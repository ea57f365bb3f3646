package relay

import "strings"

// AccountName maps the name a client logged in with to the stepgate
// account whose two-step rules apply, the way the mail server maps it to
// a mailbox (login_format mirrors Dovecot's auth_username_format; case is
// folded later, with the rest of the name profile). If the two mappings
// differed, "alice@example.org" could reach the enrolled alice's mailbox
// as an account stepgate does not know, with a password alone.
func AccountName(format, login string) string {
	switch format {
	case "%u", "%Lu":
		return login
	}
	// %n, %Ln and the default: the user part, cut at the first '@' as
	// Dovecot's %n does.
	if at := strings.IndexByte(login, '@'); at > 0 {
		return login[:at]
	}
	return login
}
