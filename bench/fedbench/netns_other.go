//go:build !linux

package main

import (
	"context"
	"errors"
	"net"
	"time"
)

const vethA, vethB, wireB = "", "", ""

func labAvailable() error  { return errors.New("network namespaces are Linux's") }
func wireAvailable() error { return labAvailable() }

type lab struct{ wire *wire }

type wire struct{ dropped interface{ Load() int64 } }

func newLab(context.Context, time.Duration) (*lab, error)  { return nil, labAvailable() }
func (*lab) lose(context.Context, int) error               { return labAvailable() }
func (*lab) close() error                                  { return nil }
func (*lab) listen() (net.PacketConn, net.Listener, error) { return nil, nil, labAvailable() }
func (*lab) clientDialers() (dialers, func(), error)       { return dialers{}, nil, labAvailable() }
func (*lab) rtt(string, int) (time.Duration, error)        { return 0, labAvailable() }
