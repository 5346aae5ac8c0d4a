//go:build !linux

package main

import "syscall"

// childProcAttr: outside Linux there is no parent-death signal; Close
// still kills every member on a normal exit or interrupt.
func childProcAttr() *syscall.SysProcAttr { return nil }
