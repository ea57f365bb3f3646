package delivery_test

import "github.com/stepgate/stepgate/internal/password"

func passwordHash(pw string) (string, error) {
	return password.HashWith(pw, password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
}
