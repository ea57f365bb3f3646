package ldap

import (
	goldap "github.com/go-ldap/ldap/v3"
)

// Controls (RFC 4511 4.1.11). A control stepgate does not act on is
// ignored when it is not critical; when it is critical the operation is
// not done and the answer is unavailableCriticalExtension. In proxy mode
// a search is done by the upstream directory, so its controls go there
// as they came (paged results, sorting, ...) and the directory, which
// knows what it supports, applies the same rule; only controls that would
// make the upstream act as someone else are held back.
const (
	// oidPasswordPolicy is the password-policy request and response
	// control (draft-behera-ldap-password-policy 6.1); nslcd and
	// ldapwhoami -e ppolicy send it on every bind.
	oidPasswordPolicy = "1.3.6.1.4.1.42.2.27.8.5.1"
	// oidManageDsaIT (RFC 3296): treat referral objects as entries.
	// stepgate's own tree holds none, so honouring it changes nothing.
	oidManageDsaIT = "2.16.840.1.113730.3.4.2"
	// Proxied authorization (RFC 4370, and its draft's v1): never
	// relayed, since the upstream would then act as an identity that
	// was not proven here.
	oidProxiedAuthz   = "2.16.840.1.113730.3.4.18"
	oidProxiedAuthzV1 = "2.16.840.1.113730.3.4.12"
)

const resultUnavailableCriticalExtension = goldap.LDAPResultUnavailableCriticalExtension

// relayed reports whether m goes to the upstream directory with its
// controls: a search in proxy mode, other than for the root DSE, which
// stepgate answers itself.
func (c *conn) relayed(m *message) bool {
	if c.s.proxy == nil || m.op != goldap.ApplicationSearchRequest {
		return false
	}
	q := m.req.(*searchRequest)
	return !(q.base == "" && q.scope == 0)
}

// honoured reports whether stepgate does what the control oid asks for
// on m.
func (c *conn) honoured(m *message, oid string) bool {
	switch {
	case oid == oidProxiedAuthz || oid == oidProxiedAuthzV1:
		return false
	case c.relayed(m):
		return true // the upstream decides
	case m.op == goldap.ApplicationBindRequest:
		return oid == oidPasswordPolicy
	case m.op == goldap.ApplicationSearchRequest, m.op == goldap.ApplicationCompareRequest && c.s.proxy == nil:
		return oid == oidManageDsaIT
	}
	return false
}

// unsupportedCritical is the first critical control of m that stepgate
// does not honour, or "".
func (c *conn) unsupportedCritical(m *message) string {
	for _, ctl := range m.controls {
		if ctl.critical && !c.honoured(m, ctl.oid) {
			return ctl.oid
		}
	}
	return ""
}

// refuseCritical answers m with unavailableCriticalExtension. A bind so
// refused leaves the connection anonymous, as any failed bind does
// (RFC 4511 4.2.1).
func (c *conn) refuseCritical(m *message, oid string) bool {
	tag := m.op + 1 // a response's tag is its request's plus one ...
	switch m.op {
	case goldap.ApplicationUnbindRequest, goldap.ApplicationAbandonRequest:
		return m.op != goldap.ApplicationUnbindRequest // no response to give
	case goldap.ApplicationSearchRequest:
		tag = goldap.ApplicationSearchResultDone // ... but for a search
	case goldap.ApplicationBindRequest:
		c.stopWatch()
		c.dropUpstream()
		c.boundDN, c.boundUser, c.service = "", "", false
	}
	r := result{code: resultUnavailableCriticalExtension, diagnostic: "critical control " + oid + " is not supported"}
	return c.write(encodeResult(m.id, tag, r)) == nil
}

// passwordPolicyResponse is the password-policy response control:
// PasswordPolicyResponseValue ::= SEQUENCE { warning [0] OPTIONAL,
// error [1] ENUMERATED OPTIONAL }. stepgate has no password expiry and no
// grace logins, so the only thing it ever says is accountLocked (1), and
// only for a lockout: every other refusal carries the empty sequence, the
// same bytes whatever the reason, as slapd's ppolicy overlay sends.
func passwordPolicyResponse(locked bool) goldap.Control {
	v := []byte{0x30, 0x00}
	if locked {
		v = []byte{0x30, 0x03, 0x81, 0x01, 0x01}
	}
	return &goldap.ControlString{ControlType: oidPasswordPolicy, ControlValue: string(v)}
}
