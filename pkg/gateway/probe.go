package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"k8s.io/utils/clock"
)

// RTTStats summarize the recent probes of one target.
type RTTStats struct {
	// Sent and Received count the completed probes in the window (a probe
	// completes when answered or when its timeout passed).
	Sent, Received int
	// Last is the most recent answered probe's RTT; Min, Avg, Max and
	// StdDev (population) cover the answered probes in the window.
	Last, Min, Avg, Max, StdDev time.Duration
	// LossPercent is the share of completed probes in the window that were
	// lost, rounded to the nearest percent.
	LossPercent int
	// LastReply is when the last answer arrived (zero: never).
	LastReply time.Time
}

// Window keeps the outcomes of the last N probes of one target. It is not
// safe for concurrent use.
type Window struct {
	size      int
	samples   []probeSample // ring
	next      int
	last      time.Duration
	lastReply time.Time
}

type probeSample struct {
	rtt  time.Duration
	lost bool
}

// NewWindow returns a window over the last n probes (n ≥ 1).
func NewWindow(n int) *Window {
	return &Window{size: max(n, 1)}
}

// Answered records a probe answered after rtt, at time at.
func (w *Window) Answered(rtt time.Duration, at time.Time) {
	w.add(probeSample{rtt: rtt})
	w.last = rtt
	w.lastReply = at
}

// Lost records a probe that went unanswered.
func (w *Window) Lost() { w.add(probeSample{lost: true}) }

func (w *Window) add(s probeSample) {
	if len(w.samples) < w.size {
		w.samples = append(w.samples, s)
		return
	}
	w.samples[w.next] = s
	w.next = (w.next + 1) % w.size
}

// Stats summarizes the window.
func (w *Window) Stats() RTTStats {
	st := RTTStats{Sent: len(w.samples), Last: w.last, LastReply: w.lastReply}
	var sum, sumSq float64
	for _, s := range w.samples {
		if s.lost {
			continue
		}
		if st.Received == 0 || s.rtt < st.Min {
			st.Min = s.rtt
		}
		if s.rtt > st.Max {
			st.Max = s.rtt
		}
		st.Received++
		f := float64(s.rtt)
		sum += f
		sumSq += f * f
	}
	if st.Received > 0 {
		n := float64(st.Received)
		mean := sum / n
		st.Avg = time.Duration(math.Round(mean))
		st.StdDev = time.Duration(math.Round(math.Sqrt(max(sumSq/n-mean*mean, 0))))
	}
	if st.Sent > 0 {
		st.LossPercent = int(math.Round(float64(st.Sent-st.Received) * 100 / float64(st.Sent)))
	}
	return st
}

// ProberOptions configure a [Prober].
type ProberOptions struct {
	// Source is the address probes are sent from (the node's pod-network
	// address, so that replies come back through the tunnel); required.
	Source netip.Addr
	// NetNS is the path of the namespace to open the socket in ("" here).
	NetNS string
	// Interval between probes of a target, and the timeout of each (default
	// 1 s).
	Interval time.Duration
	// Window is the number of probes the statistics cover (default 60).
	Window int
	// Unprivileged uses an unprivileged ICMP ("ping") socket instead of a
	// raw one.
	Unprivileged bool
	Clock        clock.WithTicker
	Logger       *slog.Logger
}

// Prober sends ICMP echo requests to a set of targets every interval and
// keeps per-target RTT statistics and loss.
type Prober struct {
	o   ProberOptions
	log *slog.Logger
	id  uint16

	mu      sync.Mutex
	targets map[string]netip.Addr // key -> address
	windows map[string]*Window
	pending map[uint16]pendingProbe
	seq     uint16
}

type pendingProbe struct {
	key  string
	addr netip.Addr
	sent time.Time
}

// NewProber returns a prober; Run starts it.
func NewProber(o ProberOptions) (*Prober, error) {
	if !o.Source.IsValid() {
		return nil, errors.New("prober: source address: unset")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Window <= 0 {
		o.Window = 60
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("prober: echo id: %w", err)
	}
	return &Prober{
		o: o, log: o.Logger, id: binary.BigEndian.Uint16(b[:]),
		targets: map[string]netip.Addr{}, windows: map[string]*Window{}, pending: map[uint16]pendingProbe{},
	}, nil
}

// Source is the address probes come from.
func (p *Prober) Source() netip.Addr { return p.o.Source }

// CanProbe reports whether a target address has the source's family.
func (p *Prober) CanProbe(a netip.Addr) bool { return a.IsValid() && a.Is4() == p.o.Source.Is4() }

// SetTargets replaces the target set (key → address). A target whose
// address changed, or that is new, starts with empty statistics; targets
// of the wrong family are ignored.
func (p *Prober) SetTargets(targets map[string]netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[string]netip.Addr, len(targets))
	for k, a := range targets {
		if !p.CanProbe(a) {
			continue
		}
		next[k] = a
		if old, ok := p.targets[k]; !ok || old != a {
			p.windows[k] = NewWindow(p.o.Window)
		}
	}
	for k := range p.windows {
		if _, ok := next[k]; !ok {
			delete(p.windows, k)
		}
	}
	p.targets = next
}

// Stats returns the statistics of a target; false when it is not probed.
func (p *Prober) Stats(key string) (RTTStats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.windows[key]
	if !ok {
		return RTTStats{}, false
	}
	return w.Stats(), true
}

func (p *Prober) network() (network string, proto int) {
	switch {
	case p.o.Source.Is4() && p.o.Unprivileged:
		return "udp4", 1
	case p.o.Source.Is4():
		return "ip4:icmp", 1
	case p.o.Unprivileged:
		return "udp6", 58
	default:
		return "ip6:ipv6-icmp", 58
	}
}

// Run probes until ctx ends. A socket that cannot be opened yet (the
// source address is not configured yet, say) is retried every interval.
func (p *Prober) Run(ctx context.Context) error {
	network, proto := p.network()
	var conn *icmp.PacketConn
	lastErr := ""
	for conn == nil {
		err := inNetNS(p.o.NetNS, func() error {
			c, err := icmp.ListenPacket(network, p.o.Source.String())
			conn = c
			return err
		})
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				p.log.Warn("health probe socket not ready; retrying", "network", network, "source", p.o.Source, "err", err)
				lastErr = msg
			}
			select {
			case <-ctx.Done():
				return nil
			case <-p.o.Clock.After(p.o.Interval):
			}
		}
	}
	p.log.Info("health prober running", "network", network, "source", p.o.Source, "interval", p.o.Interval)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.read(conn, proto)
	}()
	defer wg.Wait()
	defer conn.Close()
	t := p.o.Clock.NewTicker(p.o.Interval)
	defer t.Stop()
	p.tick(conn, proto)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			p.tick(conn, proto)
		}
	}
}

// tick expires overdue probes and sends one to every target.
func (p *Prober) tick(conn *icmp.PacketConn, proto int) {
	now := p.o.Clock.Now()
	p.mu.Lock()
	for seq, pp := range p.pending {
		if now.Sub(pp.sent) >= p.o.Interval {
			if w, ok := p.windows[pp.key]; ok && p.targets[pp.key] == pp.addr {
				w.Lost()
			}
			delete(p.pending, seq)
		}
	}
	type send struct {
		seq  uint16
		addr netip.Addr
	}
	sends := make([]send, 0, len(p.targets))
	for k, a := range p.targets {
		p.seq++
		p.pending[p.seq] = pendingProbe{key: k, addr: a, sent: now}
		sends = append(sends, send{p.seq, a})
	}
	p.mu.Unlock()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if proto == 58 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	for _, s := range sends {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(p.id), Seq: int(s.seq), Data: []byte("weft-health")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			continue
		}
		var dst net.Addr = &net.IPAddr{IP: s.addr.AsSlice()}
		if p.o.Unprivileged {
			dst = &net.UDPAddr{IP: s.addr.AsSlice()}
		}
		if _, err := conn.WriteTo(b, dst); err != nil {
			// Counted as lost at the next tick; unreachable targets are
			// normal while a tunnel comes up.
			p.log.Debug("health probe send failed", "target", s.addr, "err", err)
		}
	}
}

// read matches echo replies to pending probes until the socket closes.
func (p *Prober) read(conn *icmp.PacketConn, proto int) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Debug("health probe read failed", "err", err)
			continue
		}
		at := p.o.Clock.Now()
		msg, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || (msg.Type != ipv4.ICMPTypeEchoReply && msg.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		echo, ok := msg.Body.(*icmp.Echo)
		if !ok {
			continue
		}
		// Raw sockets see every ICMP packet of the namespace: match our id.
		// Unprivileged sockets get only their own (the kernel sets the id).
		if !p.o.Unprivileged && uint16(echo.ID) != p.id {
			continue
		}
		src := addrOf(from)
		p.mu.Lock()
		pp, ok := p.pending[uint16(echo.Seq)]
		if ok && pp.addr == src {
			delete(p.pending, uint16(echo.Seq))
			if w, ok := p.windows[pp.key]; ok && p.targets[pp.key] == pp.addr {
				w.Answered(at.Sub(pp.sent), at)
			}
		}
		p.mu.Unlock()
	}
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPAddr:
		ip = v.IP
	case *net.UDPAddr:
		ip = v.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
