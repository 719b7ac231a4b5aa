// Command ketamine-fhir maps a ketamine clinic's local records to FHIR R4
// and delivers them to an EHR. Run `ketamine-fhir help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // time_zone works on hosts without a zoneinfo database (containers)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfiles := startProfiles(os.Getenv, os.Stderr)
	if len(os.Args) > 1 {
		tuneGC(os.Args[1], os.Getenv)
	}
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfiles()
	stop()
	os.Exit(code)
}
