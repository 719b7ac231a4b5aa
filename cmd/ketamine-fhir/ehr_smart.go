package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ketamine-fhir/ketamine-fhir/fhirtest"
)

// smartOptions are the flags of `ketamine-fhir ehr` that make it a SMART
// Backend Services authorization server with one registered client.
type smartOptions struct {
	clientID string
	jwks     string
	secret   string
	scopes   string
	lifetime time.Duration
}

func addSMARTFlags(fs *flag.FlagSet) *smartOptions {
	o := &smartOptions{}
	fs.StringVar(&o.clientID, "smart-client", "", "require SMART Backend Services tokens and register this client `id` (token endpoint /auth/token, discovery at BASE/.well-known/smart-configuration)")
	fs.StringVar(&o.jwks, "smart-jwks", "", "the client's public JWK Set: a `file` (keys generate's jwks.json) or an http(s) URL fetched at each token request")
	fs.StringVar(&o.secret, "smart-secret", "", "the client's `secret`, for client-secret authentication (visible in ps: for tests only)")
	fs.StringVar(&o.scopes, "smart-scopes", "system/*.cruds", "space-separated `scopes` the client may be granted")
	fs.DurationVar(&o.lifetime, "smart-token-lifetime", 5*time.Minute, "`lifetime` of access tokens")
	return o
}

// option returns the fhirtest option, nil when --smart-client is not set.
func (o *smartOptions) option() (fhirtest.Option, error) {
	if o.clientID == "" {
		if o.jwks != "" || o.secret != "" {
			return nil, fmt.Errorf("--smart-jwks and --smart-secret need --smart-client")
		}
		return nil, nil
	}
	if o.jwks == "" && o.secret == "" {
		return nil, fmt.Errorf("--smart-client needs --smart-jwks or --smart-secret")
	}
	if o.lifetime <= 0 {
		return nil, fmt.Errorf("--smart-token-lifetime must be positive")
	}
	c := fhirtest.SMARTClient{ID: o.clientID, Secret: o.secret, Scopes: strings.Fields(o.scopes)}
	switch {
	case strings.HasPrefix(o.jwks, "http://"), strings.HasPrefix(o.jwks, "https://"):
		c.JWKSURL = o.jwks
	case o.jwks != "":
		b, err := os.ReadFile(o.jwks)
		if err != nil {
			return nil, fmt.Errorf("--smart-jwks: %v", err)
		}
		c.JWKS = b
	}
	return fhirtest.WithSMART(fhirtest.SMARTConfig{Clients: []fhirtest.SMARTClient{c}, TokenLifetime: o.lifetime}), nil
}
