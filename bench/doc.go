// Package bench is `make bench`: stepgate side by side with the programs
// it replaces or stands in front of (OpenLDAP's slapd, slapd with the otp
// overlay, Dovecot, Postfix), measured in one run, interleaved, on loopback. The
// harness is a Go test (TestBench) so that it can start the real parts
// with the same helpers as the integration tests; it runs only when
// STEPGATE_BENCH is "full" or "smoke".
package bench
