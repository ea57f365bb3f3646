package server

import (
	"context"

	"github.com/stepgate/stepgate/protocols/ldap"
)

// startFrontEnds opens the protocol listeners the config asks for and
// fills in their addresses. The returned readiness check probes what they
// depend on.
func startFrontEnds(ctx context.Context, core *Core, opts Options, addrs *Addrs) (map[string]frontEnd, func(context.Context) error, error) {
	cfg := core.Config
	fronts := map[string]frontEnd{}
	var opened []interface{ Close() error }
	fail := func(err error) (map[string]frontEnd, func(context.Context) error, error) {
		for _, o := range opened {
			o.Close()
		}
		return nil, nil, err
	}
	tlsCfg, err := serverTLS(cfg.TLS)
	if err != nil {
		return fail(err)
	}
	if on(cfg.LDAP.Listen) || on(cfg.LDAP.LDAPSListen) {
		srv, err := ldap.New(ldap.Options{Config: cfg.LDAP, TLS: tlsCfg, Verifier: core.Verifier, Store: core.Store, Log: core.Log})
		if err != nil {
			return fail(err)
		}
		if err := srv.Listen(); err != nil {
			return fail(err)
		}
		opened = append(opened, srv)
		addrs.LDAP, addrs.LDAPS = srv.Addr(), srv.LDAPSAddr()
		fronts["ldap"] = srv
	}
	return fronts, func(context.Context) error { return nil }, nil
}

func on(listen string) bool { return listen != "" && listen != "off" }
