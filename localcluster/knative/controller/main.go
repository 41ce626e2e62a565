// The Knative Serving controller (knative.dev/serving/cmd/controller) with its health probes served on
// KNFLEET_PROBES_PORT instead of the fixed :8080, so that several local clusters can run it side by side.
package main

import (
	"flag"
	"log"
	"os"
	"strconv"

	"knative.dev/pkg/injection"
	"knative.dev/pkg/injection/sharedmain"
	"knative.dev/pkg/reconciler"
	"knative.dev/pkg/signals"
	"knative.dev/serving/pkg/reconciler/configuration"
	"knative.dev/serving/pkg/reconciler/domainmapping"
	"knative.dev/serving/pkg/reconciler/gc"
	"knative.dev/serving/pkg/reconciler/labeler"
	"knative.dev/serving/pkg/reconciler/nscert"
	"knative.dev/serving/pkg/reconciler/revision"
	"knative.dev/serving/pkg/reconciler/route"
	"knative.dev/serving/pkg/reconciler/serverlessservice"
	"knative.dev/serving/pkg/reconciler/service"
)

func main() {
	flag.DurationVar(&reconciler.DefaultTimeout, "reconciliation-timeout", reconciler.DefaultTimeout,
		"The amount of time to give each reconciliation of a resource to complete before its context is canceled.")
	ctx := signals.NewContext()
	cfg := injection.ParseAndGetRESTConfigOrDie()
	port, err := strconv.Atoi(os.Getenv("KNFLEET_PROBES_PORT"))
	if err != nil {
		log.Fatalf("KNFLEET_PROBES_PORT must name the port of the health probes: %v", err)
	}
	ctx = sharedmain.WithHealthProbesDisabled(ctx)
	go func() {
		if err := injection.ServeHealthProbes(ctx, port); err != nil {
			log.Fatalf("health probes on :%d: %v", port, err)
		}
	}()
	sharedmain.MainWithConfig(ctx, "controller", cfg,
		configuration.NewController,
		labeler.NewController,
		revision.NewController,
		route.NewController,
		serverlessservice.NewController,
		service.NewController,
		gc.NewController,
		nscert.NewController,
		domainmapping.NewController,
	)
}
