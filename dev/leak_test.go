package dev

import (
	"testing"

	"github.com/outpost-mesh/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
