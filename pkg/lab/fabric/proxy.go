package fabric

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
)

// dialInOption makes gRPC dial inside namespace ns.
func dialInOption(ns string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return DialIn(ctx, ns, "tcp", addr)
	})
}

// Mapping forwards Listen (in the host namespace; loopback only) to Target
// inside the lab's control namespace.
type Mapping struct{ Listen, Target string }

// ParseMapping parses "127.0.0.1:port=host:port".
func ParseMapping(s string) (Mapping, error) {
	l, t, ok := strings.Cut(s, "=")
	if !ok {
		return Mapping{}, fmt.Errorf("mapping %q: want listen=target", s)
	}
	host, _, err := net.SplitHostPort(l)
	if err != nil {
		return Mapping{}, fmt.Errorf("mapping %q: listen: %w", s, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return Mapping{}, fmt.Errorf("mapping %q: the proxy listens on loopback only", s)
	}
	if _, _, err := net.SplitHostPort(t); err != nil {
		return Mapping{}, fmt.Errorf("mapping %q: target: %w", s, err)
	}
	return Mapping{Listen: l, Target: t}, nil
}

// Proxy forwards every mapping until ctx ends.
func Proxy(ctx context.Context, ns string, maps []Mapping, log *slog.Logger) error {
	var wg sync.WaitGroup
	var lis []net.Listener
	for _, m := range maps {
		l, err := net.Listen("tcp", m.Listen)
		if err != nil {
			for _, o := range lis {
				o.Close()
			}
			return fmt.Errorf("proxy: listen %s: %w", m.Listen, err)
		}
		lis = append(lis, l)
		wg.Add(1)
		go func(l net.Listener, m Mapping) {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					up, err := DialIn(ctx, ns, "tcp", m.Target)
					if err != nil {
						log.Warn("proxy dial", "target", m.Target, "err", err)
						return
					}
					defer up.Close()
					done := make(chan struct{}, 2)
					go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
					go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
					<-done
					<-done
				}()
			}
		}(l, m)
		log.Info("proxy", "listen", m.Listen, "target", m.Target, "netns", ns)
	}
	<-ctx.Done()
	for _, l := range lis {
		l.Close()
	}
	wg.Wait()
	return nil
}

func closeWrite(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		t.CloseWrite()
	}
}
