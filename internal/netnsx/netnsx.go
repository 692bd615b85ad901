// Package netnsx runs code inside another network namespace without moving
// the calling goroutine: fn runs on its own goroutine, on an OS thread
// switched into the namespace and back. Sockets, devices and /proc/sys/net
// files fn opens belong to that namespace. Should switching back fail, the
// thread stays locked and dies with the goroutine instead of returning to
// Go's pool in the wrong namespace.
package netnsx

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn inside ns; a closed handle (netns.None()) runs fn where we are.
func Do(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore netns: %w (after: %v)", err, ferr)
			return // the thread stays locked and exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoPath runs fn inside the namespace at path ("" runs fn where we are).
func DoPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	if err := Do(h, fn); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// DoNamed runs fn inside the named namespace (ip netns add NAME).
func DoNamed(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer h.Close()
	if err := Do(h, fn); err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}
