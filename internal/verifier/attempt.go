package verifier

import "time"

// Attempt is one sign-in as a protocol front end saw it.
type Attempt struct {
	// Protocol names the front end: "ldap", "imap", "cli".
	Protocol string
	// User is the account name the client gave, already taken out of
	// protocol syntax (a DN's uid, the part before '@' where configured).
	User string
	// Secret is exactly what the client submitted: password, or password
	// and code. It is never logged or kept.
	Secret string
	// Remote is the client's address without the port ("192.0.2.7").
	Remote string
	// TLS says whether the client's connection is encrypted.
	TLS bool
	// Password, when set, checks the password for this attempt instead of
	// the local hash: an upstream bind or login on the client's own
	// upstream connection. It is called on every attempt that gets that
	// far, session hits included, because the connection needs it.
	Password PasswordChecker
	// Directory, when set, turns User (NAME, NAME@DOMAIN or a DN) into
	// the directory's entry before the decision: the account is that
	// entry's, a name the directory does not know is unknown, and an
	// entry without a row has not enrolled.
	Directory Directory
	// Resolved, when set, is told the entry the Directory found, before
	// any password check (the proxy binds as its DN).
	Resolved func(*DirectoryEntry)
	// ServiceAccounts lets applications' service accounts (password
	// only) sign in through this front end: the LDAP directory, where
	// applications bind, and nowhere else.
	ServiceAccounts bool
	// SetUp is a person signing in to set two-step up (the portal): an
	// account without two-step signs in with its password alone, and the
	// sign-in opens no session, since that string proves nothing on any
	// other protocol. App passwords never sign in here.
	SetUp bool
}

// Result is allow or deny.
type Result string

// Results.
const (
	Allow Result = "allow"
	Deny  Result = "deny"
)

// Reason says why a decision came out as it did. It goes to the audit log
// and the metrics, never to the client: every deny looks the same outside.
type Reason string

// Reasons.
const (
	ReasonSession      Reason = "session"       // allowed: a live session for this exact string
	ReasonCode         Reason = "code"          // allowed: password and a fresh code
	ReasonPasswordOnly Reason = "password_only" // allowed: not enrolled, policy allow; or a service account
	// ReasonExemptNetwork: allowed with the password alone, not enrolled,
	// from one of two_step.exempt_networks.
	ReasonExemptNetwork Reason = "exempt_network"
	ReasonAppPassword   Reason = "app_password"   // allowed: an app password on one of its protocols
	ReasonSetUp         Reason = "password_setup" // allowed: the portal, an account without two-step, no session

	ReasonEmpty       Reason = "empty_password"
	ReasonLocked      Reason = "locked_out"
	ReasonRepeated    Reason = "repeated_failure" // the same string failed within the lockout window
	ReasonUnknownUser Reason = "unknown_user"
	ReasonBadName     Reason = "invalid_name" // the name profile (RFC 8265) rejects the name
	// ReasonIdentity: the upstream authenticated another account than
	// the one the decision was made for (a name form it maps elsewhere).
	ReasonIdentity Reason = "identity_mismatch"
	ReasonDisabled Reason = "disabled"
	// ReasonNoLocalPassword: an account whose password an upstream checks
	// (source directory or mail) at a front end without that upstream.
	ReasonNoLocalPassword Reason = "no_local_password"
	ReasonNotEnrolled     Reason = "not_enrolled"
	ReasonServiceOnly     Reason = "service_account_protocol"
	// ReasonAppPasswordProtocol: an app password on a protocol its owner
	// did not tick.
	ReasonAppPasswordProtocol Reason = "app_password_protocol"
	ReasonBadPassword         Reason = "bad_password"
	ReasonBadCode             Reason = "bad_code"
	ReasonNoCode              Reason = "no_code"
	ReasonReplayed            Reason = "replayed_code"
	ReasonCodeSent            Reason = "code_sent"
	ReasonUnavailable         Reason = "unavailable"
	ReasonBusy                Reason = "busy" // every password hashing slot taken past the wait
	ReasonError               Reason = "internal_error"

	// Refusals by a front end before any decision (Verifier.Refuse).
	ReasonPlainText Reason = "plaintext_refused"    // a password in clear from afar
	ReasonAuthzID   Reason = "authzid_refused"      // an authorization identity other than the user
	ReasonTooLong   Reason = "credentials_too_long" // a name, password or SASL response over the limit
)

// Decision is the verifier's answer to an Attempt.
type Decision struct {
	Result Result
	Reason Reason
	// User is the account's canonical name on success.
	User string
	// Message, when not empty, is text meant for the person at the client
	// ("Security code sent to ***-***-1234. Append it to your password.").
	// Front ends show it where their protocol has room; otherwise they
	// show their generic failure text.
	Message string
	// Session is the session that let the attempt in, or that it opened.
	// Its Revoked channel tells a front end when to close connections.
	Session SessionHandle
	// Elapsed is how long the decision took.
	Elapsed time.Duration
}

// Allowed reports whether the attempt is let in.
func (d Decision) Allowed() bool { return d.Result == Allow }

// Unavailable reports whether the attempt failed because a password
// backend could not be reached (so a client should keep its password).
func (d Decision) Unavailable() bool { return d.Reason == ReasonUnavailable }

// Busy reports whether the attempt failed because stepgate had no room
// to check the password in time (so a client should retry, not give up).
func (d Decision) Busy() bool { return d.Reason == ReasonBusy }

// SessionHandle is what a front end may know of a session.
type SessionHandle interface {
	// SessionID names the session in the admin API and the audit log.
	SessionID() string
	// Revoked is closed when the session is revoked.
	Revoked() <-chan struct{}
}
