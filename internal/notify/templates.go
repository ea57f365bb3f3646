package notify

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// Default templates of the sign-in code message.
const (
	DefaultEmailSubject = `Your {{.Service}} security code`
	DefaultEmailBody    = `Someone - hopefully you - signed in to {{.Service}} as {{.User}} with the right password from {{.Remote}} at {{.Time}}.

Your security code is {{.Code}}

Append it to your password{{if .Separator}} after "{{.Separator}}"{{end}} and sign in again. It works once, within {{.Minutes}} minutes.

If this was not you, someone knows your password: change it now.
`
	DefaultSMSBody = `{{.Code}} is your {{.Service}} security code. Append it to your password{{if .Separator}} after "{{.Separator}}"{{end}}. Valid {{.Minutes}} min. Not you? Change your password.`
)

// CodeData is what a code template can use.
type CodeData struct {
	Service   string // the name of the service ("stepgate")
	User      string // the account
	Code      string
	Minutes   int    // how long the code works
	Remote    string // the address the sign-in came from
	Time      string // when, RFC 1123
	Separator string // the configured separator, "" when none
}

func sampleCodeData() CodeData {
	return CodeData{Service: "stepgate", User: "alice", Code: "123456", Minutes: 10, Remote: "192.0.2.7",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC1123), Separator: ";"}
}

// Templates render the sign-in code message.
type Templates struct {
	emailSubject, emailBody, smsBody *template.Template
}

// ParseTemplates parses the code templates; an empty one is the default.
// Each is tried on sample data, so that a misspelt field fails at start-up,
// not at the first sign-in. The error names the template: subject, body
// or sms.
func ParseTemplates(emailSubject, emailBody, smsBody string) (*Templates, error) {
	t := &Templates{}
	for _, x := range []struct {
		name, text, def string
		dst             **template.Template
	}{
		{"subject", emailSubject, DefaultEmailSubject, &t.emailSubject},
		{"body", emailBody, DefaultEmailBody, &t.emailBody},
		{"sms", smsBody, DefaultSMSBody, &t.smsBody},
	} {
		if x.text == "" {
			x.text = x.def
		}
		tm, err := template.New(x.name).Option("missingkey=error").Parse(x.text)
		if err != nil {
			return nil, fmt.Errorf("%s template: %w", x.name, err)
		}
		out, err := render(tm, sampleCodeData())
		if err != nil {
			return nil, fmt.Errorf("%s template: %w", x.name, err)
		}
		if !strings.Contains(out, "123456") && x.name != "subject" {
			return nil, fmt.Errorf("%s template: it never shows {{.Code}}", x.name)
		}
		*x.dst = tm
	}
	return t, nil
}

func render(t *template.Template, data any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Code renders the sign-in code message for kind.
func (t *Templates) Code(kind store.MethodKind, to string, d CodeData) (Message, error) {
	m := Message{To: to, Secrets: []string{d.Code}}
	var err error
	if kind == store.MethodEmail {
		if m.Subject, err = render(t.emailSubject, d); err == nil {
			m.Subject = strings.ReplaceAll(strings.TrimSpace(m.Subject), "\n", " ")
			m.Body, err = render(t.emailBody, d)
		}
	} else {
		m.Body, err = render(t.smsBody, d)
	}
	return m, err
}

var (
	confirmSubject = template.Must(template.New("confirm subject").Parse(`Confirm this address for {{.Service}}`))
	confirmEmail   = template.Must(template.New("confirm").Parse(`Your code to confirm this address for {{.Service}} (account {{.User}}) is {{.Code}}

It works for {{.Minutes}} minutes. Once confirmed, sign-in codes and security alerts for {{.User}} can come here.
If you did not ask for this, ignore this message.
`))
	confirmSMS = template.Must(template.New("confirm sms").Parse(`{{.Code}} confirms this number for {{.Service}} ({{.User}}). Valid {{.Minutes}} min. Not you? Ignore this.`))
)

// Confirmation renders the message that proves an address is the owner's
// before it is used.
func Confirmation(kind store.MethodKind, to string, d CodeData) Message {
	m := Message{To: to, Secrets: []string{d.Code}}
	// The built-in templates cannot fail on CodeData.
	if kind == store.MethodEmail {
		m.Subject, _ = render(confirmSubject, d)
		m.Body, _ = render(confirmEmail, d)
	} else {
		m.Body, _ = render(confirmSMS, d)
	}
	return m
}
