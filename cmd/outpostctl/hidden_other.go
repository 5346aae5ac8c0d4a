//go:build !linux

package main

import (
	"errors"
	"os"
)

// readHidden is not built here: the password comes from --password-stdin.
func readHidden(*os.File) (string, error) {
	return "", errors.New("cannot turn off the terminal's echo on this system")
}
