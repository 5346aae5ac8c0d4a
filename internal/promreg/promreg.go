// Package promreg registers a component's Prometheus collectors all or
// none, returning the error (a component refuses to start on one rather
// than running with metrics that silently are not exported).
package promreg

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers every collector on reg; on an error it unregisters
// those it registered and says which component failed.
func Register(reg prometheus.Registerer, component string, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("registering the %s metrics: %w", component, err)
		}
	}
	return nil
}

// Unregister removes collectors registered with Register.
func Unregister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	for _, c := range cs {
		reg.Unregister(c)
	}
}
