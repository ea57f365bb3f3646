// Package certpool reads the CA files that stepgate trusts for its
// upstreams (a directory, a mail server, an SMTP relay): one reader, one
// wording of its errors.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load reads the PEM certificates in file into a pool. key is the
// configuration key that named the file, for the error; an empty file
// name gives a nil pool (the system's roots).
func Load(key, file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", key, file)
	}
	return pool, nil
}
