package main

import "syscall"

// childProcAttr makes the kernel kill an etcd member if the benchmark dies
// first, so an interrupted run leaves no stray etcd behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
