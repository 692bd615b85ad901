package fabric

import (
	"context"
	"net"

	"github.com/weftnet/weft/internal/netnsx"
)

// DialIn connects to addr from inside the named network namespace: the
// socket is created on an OS thread switched into it, so the connection
// lives there while the caller stays where it is.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netnsx.DoNamed(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
