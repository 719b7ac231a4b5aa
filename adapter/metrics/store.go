package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterStore registers ketamine_fhir_store_info{driver} (always 1:
// which outbox driver, "sqlite" or "postgres", this process uses) and
// ketamine_fhir_store_instances (the live instances sharing the outbox,
// which divide the EHR's rate between them; 1 for a store of its own),
// read from instances at scrape time.
func RegisterStore(reg prometheus.Registerer, driver string, instances func() int) error {
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "store_info",
		Help:        "The outbox driver this process uses (the value is always 1).",
		ConstLabels: prometheus.Labels{"driver": driver},
	})
	info.Set(1)
	if err := reg.Register(info); err != nil {
		return err
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "store_instances",
		Help: "Live adapter instances sharing the outbox and the EHR's rate (1 with a store of its own).",
	}, func() float64 { return float64(instances()) }))
}
