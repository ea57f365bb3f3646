package server

import (
	"crypto/tls"
	"fmt"

	"github.com/stepgate/stepgate/internal/config"
)

// serverTLS loads the certificate the front ends present, or returns nil
// when none is configured (StartTLS, STARTTLS, ldaps and imaps then stay
// off, and plain-text sign-ins are taken from loopback only).
func serverTLS(c config.TLS) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
