package wireguard

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn on an OS thread switched into ns, then switches back. A
// zero (closed) handle runs fn where we are. fn runs on its own goroutine so
// that, should restoring the original namespace fail, the thread dies with
// the goroutine instead of returning to the pool in the wrong namespace.
// Sockets and devices created by fn stay in ns.
func inNetNS(ns netns.NsHandle, fn func() error) error {
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
			// Leave the thread locked: it exits with this goroutine.
			errc <- fmt.Errorf("restore netns: %w (after: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// openNetNS opens the namespace at path; "" yields a closed handle meaning
// "the current namespace".
func openNetNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}
