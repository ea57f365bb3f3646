package directory

import "testing"

// TestIdentity: Active Directory's objectGUID is printed as AD prints it
// (the first three fields little-endian), text identities as they are.
func TestIdentity(t *testing.T) {
	raw := []byte{0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	if got := identity("objectGUID", raw); got != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Fatalf("objectGUID = %s", got)
	}
	if got := identity("entryUUID", []byte("5f3c0b7e-0000-1000-8000-000000000001")); got != "5f3c0b7e-0000-1000-8000-000000000001" {
		t.Fatalf("entryUUID = %s", got)
	}
	if got := identity("other", []byte{0xff, 0x00}); got != "ff00" {
		t.Fatalf("binary = %s", got)
	}
}
