package wireguard

import (
	"fmt"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netnsx"
)

// inNetNS runs fn inside ns (a closed handle: where we are); sockets and
// devices fn creates stay in ns.
func inNetNS(ns netns.NsHandle, fn func() error) error { return netnsx.Do(ns, fn) }

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
