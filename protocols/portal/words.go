package portal

import (
	"html/template"
	"strings"
	"time"

	"github.com/stepgate/stepgate/internal/store"
	"github.com/stepgate/stepgate/internal/verifier"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2 Jan 2006, 15:04 UTC")
	},
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"upper": strings.ToUpper,
	"join":  strings.Join,
	"protocols": func(ps []string) string {
		var out []string
		for _, p := range ps {
			out = append(out, protocolName(p))
		}
		return strings.Join(out, ", ")
	},
	"protocolName": protocolName,
	"add":          func(a, b int) int { return a + b },
}

func protocolName(p string) string {
	switch strings.ToLower(p) {
	case "smtp", "submission":
		return "SMTP (sending mail)"
	case "imap":
		return "IMAP (reading mail)"
	case "pop3":
		return "POP3 (fetching mail)"
	case "ldap":
		return "LDAP (directory, intranet apps)"
	case "portal":
		return "this portal"
	case "cli":
		return "the command line"
	}
	return p
}

// signInWords says what a decision's reason means to the person whose
// account it was.
var signInWords = map[verifier.Reason]string{
	verifier.ReasonSession:             "Signed in (a device that had signed in before)",
	verifier.ReasonCode:                "Signed in with the password and a code",
	verifier.ReasonPasswordOnly:        "Signed in with the password alone",
	verifier.ReasonAppPassword:         "Signed in with an app password",
	verifier.ReasonSetUp:               "Signed in to set up two-step verification",
	verifier.ReasonLocked:              "Refused: too many failed attempts, the account was locked for a while",
	verifier.ReasonRepeated:            "Refused: the same wrong password again",
	verifier.ReasonBadPassword:         "Refused: wrong password",
	verifier.ReasonBadCode:             "Refused: wrong code",
	verifier.ReasonNoCode:              "Refused: the password came without a code",
	verifier.ReasonReplayed:            "Refused: a code that was used already",
	verifier.ReasonCodeSent:            "A code was sent to you for a sign-in",
	verifier.ReasonNotEnrolled:         "Refused: two-step verification is not set up",
	verifier.ReasonDisabled:            "Refused: the account is disabled",
	verifier.ReasonAppPasswordProtocol: "Refused: an app password on a protocol it is not for",
	verifier.ReasonPlainText:           "Refused: the password was sent without encryption",
	verifier.ReasonUnavailable:         "Failed: the password could not be checked just then",
	verifier.ReasonBusy:                "Failed: too many sign-ins at once",
}

var changeWords = map[string]string{
	"authenticator_started":   "An authenticator app set-up was started",
	"authenticator_confirmed": "An authenticator app was added",
	"authenticator_removed":   "An authenticator app was removed",
	"recovery_codes_made":     "New recovery codes were made (the old ones stopped working)",
	"session_revoked":         "A device was signed out",
	"sessions_revoked":        "Every device was signed out",
	"app_password_made":       "An app password was made",
	"app_password_revoked":    "An app password was revoked",
	"method_added":            "An e-mail address or phone number was added",
	"method_confirmed":        "An e-mail address or phone number was confirmed",
	"method_removed":          "An e-mail address or phone number was removed",
}

func inWords(e store.UserEvent) event {
	ev := event{At: e.At, Where: e.Remote, How: protocolName(e.Protocol)}
	switch e.Kind {
	case store.UserEventChange:
		ev.What = changeWords[e.Detail]
		if ev.What == "" {
			ev.What = "A change: " + e.Detail
		}
	default:
		ev.What = signInWords[verifier.Reason(e.Detail)]
		if ev.What == "" {
			if e.Result == string(verifier.Allow) {
				ev.What = "Signed in"
			} else {
				ev.What = "Refused sign-in"
			}
		}
		ev.Bad = e.Result != string(verifier.Allow)
	}
	if ev.Where == "" {
		ev.Where = "unknown address"
	}
	return ev
}
