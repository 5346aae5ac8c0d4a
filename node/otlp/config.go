package otlp

import (
	"cmp"
	"fmt"
)

// Config bounds what requests may cost, one and all together.
type Config struct {
	// MaxBodyBytes bounds a request body, compressed or not (default 8 MiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInFlight bounds requests being decoded and converted at once on
	// this node; more are answered 429 with Retry-After (default 8).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxInFlightPerTenant bounds one tenant's requests among them, so one
	// tenant cannot take every slot (default 0: half of MaxInFlight, at
	// least 1).
	MaxInFlightPerTenant int `yaml:"max_in_flight_per_tenant"`
	// MaxInFlightBytes bounds the memory of the requests in flight: each
	// is charged its body plus what decoding it is estimated to allocate
	// (from a walk of its wire format, before it is decoded), and one
	// that does not fit is answered 429 with Retry-After, or 413 if it
	// could never fit (default 256 MiB). A protobuf body can decode to
	// 200 times its size (many tiny messages), so this, not MaxInFlight
	// times MaxBodyBytes, is what bounds the receiver's heap.
	MaxInFlightBytes int64 `yaml:"max_in_flight_bytes"`
	// ResourceLabels are the resource attributes kept as labels (besides
	// the node's tenant, agent and host); the rest are dropped. Default:
	// service.name, service.namespace, service.instance.id (which the
	// translator also turns into job and instance).
	ResourceLabels []string `yaml:"resource_labels"`
}

// Defaults fills unset fields; MaxInFlightPerTenant stays 0 (derived
// from MaxInFlight when the receiver starts, so a configured
// max_in_flight moves it too).
func (c Config) Defaults() Config {
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 8<<20)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, 8)
	c.MaxInFlightBytes = cmp.Or(c.MaxInFlightBytes, 256<<20)
	if c.ResourceLabels == nil {
		c.ResourceLabels = []string{"service.name", "service.namespace", "service.instance.id"}
	}
	return c
}

// perTenant is MaxInFlightPerTenant, or its default.
func (c Config) perTenant() int {
	return cmp.Or(c.MaxInFlightPerTenant, max(1, c.MaxInFlight/2))
}

// Validate rejects bounds that would refuse every request or none.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 256<<20:
		return fmt.Errorf("telemetry.otlp.max_body_bytes %d must be in [1024, 268435456]", c.MaxBodyBytes)
	case c.MaxInFlight < 1:
		return fmt.Errorf("telemetry.otlp.max_in_flight %d must be at least 1", c.MaxInFlight)
	case c.MaxInFlightPerTenant < 0 || c.MaxInFlightPerTenant > c.MaxInFlight:
		return fmt.Errorf("telemetry.otlp.max_in_flight_per_tenant %d must be in [0, max_in_flight (%d)]; 0 is half of max_in_flight",
			c.MaxInFlightPerTenant, c.MaxInFlight)
	case c.MaxInFlightBytes < c.MaxBodyBytes:
		return fmt.Errorf("telemetry.otlp.max_in_flight_bytes %d must be at least max_body_bytes (%d), and is best 10 times it or more: a body decodes to several times its size",
			c.MaxInFlightBytes, c.MaxBodyBytes)
	}
	return nil
}
