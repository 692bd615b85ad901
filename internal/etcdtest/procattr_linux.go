package etcdtest

import "syscall"

// sysProcAttr makes the kernel kill an etcd process when the test binary
// dies without running its cleanups (for example on a test timeout).
// (Strictly, when the OS thread that started it exits; Go only retires
// threads whose goroutine exits while locked to it, which tests starting
// etcd do not do.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
