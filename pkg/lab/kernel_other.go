//go:build !linux

package lab

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

var errNotLinux = errors.New("the lab needs Linux network namespaces")

// NewKernel returns a Kernel that fails: the lab needs Linux.
func NewKernel(log *slog.Logger) Kernel { return unsupported{} }

type unsupported struct{}

func (unsupported) Namespaces(context.Context) ([]string, error)  { return nil, errNotLinux }
func (unsupported) DeleteNamespace(context.Context, string) error { return errNotLinux }
func (unsupported) Apply(context.Context, Step) error             { return errNotLinux }
func (unsupported) NamespaceProcesses(context.Context, string) ([]Proc, error) {
	return nil, errNotLinux
}
func (unsupported) StartProcess(context.Context, ProcessSpec) (Proc, error) {
	return Proc{}, errNotLinux
}
func (unsupported) StopProcesses(context.Context, []Proc, time.Duration) (int, error) {
	return 0, errNotLinux
}
func (unsupported) Alive(Proc) bool { return false }
