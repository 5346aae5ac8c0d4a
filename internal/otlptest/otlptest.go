// Package otlptest gives tests a real OTLP client (the OpenTelemetry Go
// SDK's OTLP/HTTP metrics exporter, code nobody here wrote) that sends
// with an enrolled agent's certificate (tests only).
package otlptest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
)

// Exporter sends to the agent port at agentURL with the certificate and
// CA an agent keeps in its state directory dir, without retries (the
// test sees every refusal); more options are added after those. It is
// shut down when the test ends.
func Exporter(t testing.TB, agentURL, dir string, more ...otlpmetrichttp.Option) *otlpmetrichttp.Exporter {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	u, err := url.Parse(agentURL)
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(u.Host),
		otlpmetrichttp.WithTLSClientConfig(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: u.Hostname()}),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false})}, more...)
	exp, err := otlpmetrichttp.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Shutdown(context.Background()) })
	return exp
}
