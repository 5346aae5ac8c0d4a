package dev

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outpost-mesh/outpost/api"
)

type apiAgent = api.Agent

func apiClient(addr, token string) *api.Client { return api.NewClient(addr, token) }

// httptestServer is a loopback web server answering 200.
func httptestServer(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	t.Cleanup(s.Close)
	return s.URL
}
