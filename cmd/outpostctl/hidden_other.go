//go:build !linux

package main

import (
	"context"
	"errors"
	"os"
)

// readHidden is not built here: the password comes from --password-stdin.
func readHidden(context.Context, *os.File) (string, error) {
	return "", errors.New("cannot turn off the terminal's echo on this system")
}
