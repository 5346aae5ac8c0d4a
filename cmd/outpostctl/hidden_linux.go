package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// readHidden reads a line from the terminal f with echo off. When ctx
// ends (Ctrl-C) the echo is restored and the process exits (130).
func readHidden(ctx context.Context, f *os.File) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", errors.New("standard input is not a terminal")
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	done := make(chan struct{})
	defer close(done)
	defer func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }()
	go func() {
		select {
		case <-ctx.Done():
			_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
			os.Stderr.WriteString("\n")
			os.Exit(130)
		case <-done:
		}
	}()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
