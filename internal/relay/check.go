package relay

import (
	"context"
	"net"

	"github.com/stepgate/stepgate/internal/verifier"
)

// PasswordChecker is the password check of a sign-in made elsewhere (the
// portal) against this relay's mail server: the login a client's
// sign-in makes, on a connection of its own that is closed right after.
// login is the name as the person typed it; client is their address,
// announced to the mail server as for a client of the relay.
func (r *Relay) PasswordChecker(login string, client net.Addr) verifier.PasswordChecker {
	return &loginCheck{r: r, login: login, client: client}
}

type loginCheck struct {
	r      *Relay
	login  string
	client net.Addr
}

func (k *loginCheck) CheckPassword(ctx context.Context, _, password string) error {
	up, err := k.r.up.open(ctx, k.r.proto, k.client)
	if err != nil {
		k.r.log.Warn("mail server unavailable", "upstream", k.r.up.Addr, "err", err)
		return err
	}
	defer up.Close()
	return up.login(k.r.up, k.login, password, "")
}
