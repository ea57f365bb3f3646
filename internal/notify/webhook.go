package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/stepgate/stepgate/internal/store"
)

// DefaultSignatureHeader carries the webhook's signature.
const DefaultSignatureHeader = "X-Stepgate-Signature"

// Webhook sends text messages through an SMS gateway's HTTP API: a JSON
// POST of {"to", "message", "time"} whose body is signed with
// HMAC-SHA256 under a shared key, in the header
// "X-Stepgate-Signature: sha256=<hex>".
type Webhook struct {
	url    string
	key    []byte
	header string
	client *http.Client
	now    func() time.Time
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	URL string
	// Key signs every body; at least 16 bytes.
	Key []byte
	// Header names the signature header; DefaultSignatureHeader if empty.
	Header string
	// RootCAs verifies an https gateway; nil means the system's roots.
	RootCAs *x509.CertPool
	// Now is the clock for the "time" field; nil means time.Now.
	Now func() time.Time
}

// WebhookBody is what the gateway receives.
type WebhookBody struct {
	To      string    `json:"to"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// NewWebhook returns a Webhook transport.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: %q is not an http:// or https:// URL", o.URL)
	}
	if len(o.Key) < 16 {
		return nil, errors.New("webhook: the signing key must be at least 16 bytes")
	}
	if o.Header == "" {
		o.Header = DefaultSignatureHeader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 4
	client := &http.Client{
		Transport: tr,
		// A gateway that redirects is misconfigured: do not post the
		// message somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Webhook{url: o.URL, key: append([]byte(nil), o.Key...), header: o.Header, client: client, now: o.Now}, nil
}

// Sign returns the signature header value of body under key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Deliver posts one message.
func (w *Webhook) Deliver(ctx context.Context, kind store.MethodKind, m Message) error {
	if kind != store.MethodSMS {
		return Permanent(fmt.Errorf("webhook cannot deliver %s", kind))
	}
	body, err := json.Marshal(WebhookBody{To: m.To, Message: m.Body, Time: w.now().UTC()})
	if err != nil {
		return Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "stepgate")
	req.Header.Set(w.header, Sign(w.key, body))
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL error repeats the URL, never the body.
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook: gateway answered %s", resp.Status)
	default:
		return Permanent(fmt.Errorf("webhook: gateway answered %s", resp.Status))
	}
}
