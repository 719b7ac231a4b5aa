package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ketamine-fhir/ketamine-fhir/adapter/ehr"
)

// Files written by `keys generate`.
const (
	keysPrivateFile = "private.pem"
	keysJWKSFile    = "jwks.json"
)

// runKeys is `keys generate --alg RS384|ES384 --out DIR`: a new signing
// key for SMART Backend Services and its public JWK Set to register with
// the EHR.
func runKeys(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "generate" {
		fmt.Fprintln(stderr, "Usage: ketamine-fhir keys generate --alg RS384|ES384 --out DIR")
		return exitUsage
	}
	fs := newFlags("keys generate", "--alg RS384|ES384 --out DIR", stderr)
	alg := fs.String("alg", ehr.AlgES384, "signing algorithm: ES384 (EC P-384) or RS384 (RSA 3072 bits)")
	out := fs.String("out", "", "directory for "+keysPrivateFile+" (mode 0600) and "+keysJWKSFile+" (public); created if missing")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if fs.NArg() != 0 || *out == "" {
		fs.Usage()
		return exitUsage
	}
	if *alg != ehr.AlgRS384 && *alg != ehr.AlgES384 {
		fmt.Fprintf(stderr, "keys generate: --alg %q is not RS384 or ES384\n", *alg)
		return exitUsage
	}
	privPath := filepath.Join(*out, keysPrivateFile)
	if _, err := os.Lstat(privPath); err == nil {
		fmt.Fprintf(stderr, "keys generate: %s exists; move it away first (to rotate, generate into a new directory)\n", privPath)
		return exitUsage
	} else if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "keys generate: %v\n", err)
		return exitFailed
	}
	priv, jwks, kid, err := ehr.GenerateKey(*alg)
	if err != nil {
		fmt.Fprintf(stderr, "keys generate: %v\n", err)
		return exitFailed
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		fmt.Fprintf(stderr, "keys generate: %v\n", err)
		return exitFailed
	}
	// O_EXCL: never overwrite a key; 0600: readable by the adapter only.
	f, err := os.OpenFile(privPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, err = f.Write(priv)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(*out, keysJWKSFile), append(jwks, '\n'), 0o644)
	}
	if err != nil {
		os.Remove(privPath)
		fmt.Fprintf(stderr, "keys generate: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s key %s\nprivate key: %s (mode 0600; set ehr.auth.private_key: file:%s)\npublic JWKS: %s (register it with the EHR, or publish it with api.jwks_path)\n",
		*alg, kid, privPath, privPath, filepath.Join(*out, keysJWKSFile))
	return exitOK
}
