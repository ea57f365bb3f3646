package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/stepgate/stepgate/internal/config"
	"github.com/stepgate/stepgate/internal/directory"
	"github.com/stepgate/stepgate/internal/verifier"
)

// NewDirectory is the upstream directory that ldap.upstream names, or nil
// without one: the LDAP proxy resolves bind names with it, the verifier
// reads groups with it, and the CLI resolves a person before enrolling.
func NewDirectory(cfg *config.Config, log *slog.Logger) (*directory.Directory, error) {
	u := cfg.LDAP.Upstream
	if u == nil {
		return nil, nil
	}
	dc := directory.Config{URLs: u.URLs, StartTLS: u.StartTLS, CAFile: u.CAFile, Timeout: u.Timeout.D(),
		BaseDN: cfg.LDAP.BaseDN, UserAttribute: u.UserAttribute, IDAttribute: u.IDAttribute,
		LookupDN: u.LookupDN, Groups: u.Groups, GroupBaseDN: u.GroupBaseDN, CacheTTL: u.LookupCache.D(),
		Log: log.With("service", "directory")}
	if u.LookupPasswordFile != "" {
		b, err := os.ReadFile(u.LookupPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("ldap.upstream.lookup_password_file: %w", err)
		}
		dc.LookupPassword = strings.TrimRight(string(b), "\r\n")
		if dc.LookupPassword == "" {
			return nil, errors.New("ldap.upstream.lookup_password_file: the file is empty")
		}
	}
	return directory.New(dc)
}

// twoStepRules sets the verifier's group and network rules from the
// two_step section; group DNs take the form the directory reports them in.
func twoStepRules(cfg *config.Config, vc *verifier.Config) error {
	for i, g := range cfg.TwoStep.RequireGroups {
		n, err := directory.NormalizeDN(g)
		if err != nil {
			return fmt.Errorf("two_step.require_groups[%d]: %q: %w", i, g, err)
		}
		vc.RequireGroups = append(vc.RequireGroups, n)
	}
	exempt, err := config.Prefixes(cfg.TwoStep.ExemptNetworks)
	if err != nil {
		return fmt.Errorf("two_step.exempt_networks: %w", err)
	}
	vc.ExemptNetworks = exempt
	return nil
}
