package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/client"
)

// BrokerOptions configure [Broker].
type BrokerOptions struct {
	// BrokerBinary is cmd/broker; it runs as its own process so its RSS is
	// its own.
	BrokerBinary string
	Clusters     int // default 1000
	Endpoints    int // per cluster, default 2
	Exports      int // per cluster, default 50
	Changes      int // endpoint changes timed through all watchers, default 20
	Parallel     int // concurrent simulated members while loading, default 32
	Log          *slog.Logger
}

// BrokerReport holds the broker figures.
type BrokerReport struct {
	Options              BrokerOptions
	JoinTime, LoadTime   time.Duration
	Records              int
	FanoutP50, FanoutP99 time.Duration
	FanoutMax            time.Duration
	RSSBytes             int64
}

// Broker runs a real broker process with embedded etcd, joins Clusters
// simulated members, loads their endpoints and exports, opens one watch
// per member, and times how long one endpoint change takes to reach every
// watcher.
func Broker(ctx context.Context, o BrokerOptions) (*BrokerReport, error) {
	if o.Clusters <= 0 {
		o.Clusters = 1000
	}
	if o.Endpoints <= 0 {
		o.Endpoints = 2
	}
	if o.Exports <= 0 {
		o.Exports = 50
	}
	if o.Changes <= 0 {
		o.Changes = 20
	}
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clusters > 1024 {
		return nil, errors.New("bench broker: at most 1024 clusters (address plan)")
	}
	dir, err := os.MkdirTemp("", "weft-bench-broker-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.CommandContext(ctx, o.BrokerBinary, "--listen", addr, "--data-dir", dir, "--metrics-addr", "",
		"--join-rate", "100000", "--join-burst", "100000")
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	admin, err := waitAdmin(ctx, filepath.Join(dir, "admin.json"))
	if err != nil {
		return nil, err
	}
	conn, err := client.Dial(admin, "")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	adm := v1.NewAdminServiceClient(conn)
	tok, err := adm.CreateToken(ctx, &v1.CreateTokenRequest{Uses: uint32(o.Clusters)})
	if err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}

	r := &BrokerReport{Options: o}
	members := make([]v1.MemberServiceClient, o.Clusters)
	conns := make([]*grpc.ClientConn, o.Clusters)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	if err := parallel(ctx, o.Clusters, o.Parallel, func(i int) error {
		id := fmt.Sprintf("c%04d", i)
		creds, _, err := client.Join(ctx, client.JoinOptions{Token: tok.Token, Cluster: &v1.ClusterInfo{
			Id: id, PodCidrs: []string{podCIDR(i)}, ServiceCidrs: []string{svcCIDR(i)},
		}})
		if err != nil {
			return fmt.Errorf("join %s: %w", id, err)
		}
		if conns[i], err = client.Dial(creds, ""); err != nil {
			return err
		}
		members[i] = v1.NewMemberServiceClient(conns[i])
		return nil
	}); err != nil {
		return nil, err
	}
	r.JoinTime = time.Since(start)
	o.Log.Info("joined", "clusters", o.Clusters, "in", r.JoinTime.Round(time.Millisecond))

	start = time.Now()
	created := timestamppb.New(time.Now())
	if err := parallel(ctx, o.Clusters, o.Parallel, func(i int) error {
		id := fmt.Sprintf("c%04d", i)
		for e := 0; e < o.Endpoints; e++ {
			if _, err := members[i].PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: benchEndpoint(id, i, e, 0)}); err != nil {
				return fmt.Errorf("%s endpoint: %w", id, err)
			}
		}
		for x := 0; x < o.Exports; x++ {
			if _, err := members[i].PutExport(ctx, &v1.PutExportRequest{Export: &v1.ServiceExport{
				ClusterId: id, Namespace: "bench", Name: fmt.Sprintf("svc-%d", x), Type: v1.ServiceType_SERVICE_TYPE_CLUSTER_SET_IP,
				Ports: []*v1.ServicePort{{Name: "http", Protocol: v1.Protocol_PROTOCOL_TCP, Port: 80}},
				Ips:   []string{svcIP(i, x)}, Created: created,
			}}); err != nil {
				return fmt.Errorf("%s export: %w", id, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	r.LoadTime = time.Since(start)
	r.Records = o.Clusters * (1 + o.Endpoints + o.Exports)
	o.Log.Info("loaded", "records", r.Records, "in", r.LoadTime.Round(time.Millisecond))

	// One watch per member, resuming from the current revision (members
	// that already hold the state): the fan-out is what is timed.
	last, err := members[0].PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: benchEndpoint("c0000", 0, 0, 0)})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type arrival struct {
		rev int64
		at  time.Time
	}
	arrivals := make(chan arrival, o.Clusters*o.Changes)
	var ready atomic.Int64
	var wg sync.WaitGroup
	for i := range members {
		stream, err := members[i].Watch(wctx, &v1.WatchRequest{FromRevision: last.Revision})
		if err != nil {
			return nil, fmt.Errorf("watch %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Add(1)
			for {
				ev, err := stream.Recv()
				if err != nil {
					return
				}
				if ev.Type == v1.EventType_EVENT_TYPE_PUT && ev.GetEndpoint() != nil {
					arrivals <- arrival{ev.Revision, time.Now()}
				}
			}
		}()
	}
	var lat []time.Duration
	for c := 1; c <= o.Changes; c++ {
		sent := time.Now()
		resp, err := members[0].PutEndpoint(ctx, &v1.PutEndpointRequest{Endpoint: benchEndpoint("c0000", 0, 0, c)})
		if err != nil {
			return nil, err
		}
		got := 0
		timeout := time.After(30 * time.Second)
		for got < o.Clusters {
			select {
			case a := <-arrivals:
				if a.rev == resp.Revision {
					lat = append(lat, a.at.Sub(sent))
					got++
				}
			case <-timeout:
				return nil, fmt.Errorf("change %d reached %d of %d watchers in 30 s", c, got, o.Clusters)
			}
		}
	}
	cancel()
	slices.Sort(lat)
	r.FanoutP50 = lat[len(lat)/2]
	r.FanoutP99 = lat[len(lat)*99/100]
	r.FanoutMax = lat[len(lat)-1]
	r.RSSBytes, _ = rss(cmd.Process.Pid)
	return r, nil
}

func benchEndpoint(id string, i, e, version int) *v1.Endpoint {
	key := make([]byte, 32)
	copy(key, fmt.Sprintf("%s-%d", id, e))
	key[31] = 1
	return &v1.Endpoint{
		ClusterId: id, Gateway: fmt.Sprintf("%s-gw%d", id, e), PublicKey: key,
		PrivateIp: "192.0.2.1", PublicIp: "198.51.100.1", Port: uint32(51820 + version%100),
		Subnets: []string{podCIDR(i), svcCIDR(i)},
	}
}

func podCIDR(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256, i%256) }
func svcCIDR(i int) string { return fmt.Sprintf("172.%d.%d.0/24", 16+i/256, i%256) }
func svcIP(i, x int) string {
	return fmt.Sprintf("172.%d.%d.%d", 16+i/256, i%256, 1+x%250)
}

func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func waitAdmin(ctx context.Context, path string) (*client.Credentials, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if raw, err := os.ReadFile(path); err == nil {
			if c, err := client.UnmarshalCredentials(raw); err == nil {
				// The file is written before the listener opens: wait for it.
				if conn, err := net.DialTimeout("tcp", c.Addresses[0], time.Second); err == nil {
					conn.Close()
					return c, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("broker did not come up (no %s)", path)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// rss reads a process's resident set size from /proc.
func rss(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// Print writes the broker figures.
func (r *BrokerReport) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "\nBroker: %d simulated member clusters in one process, %d endpoints + %d exports each, one broker process (embedded etcd, fsync on)\n",
		o.Clusters, o.Endpoints, o.Exports)
	fmt.Fprintf(w, "join rate:            %.0f joins/s (%d joins in %s)\n", float64(o.Clusters)/r.JoinTime.Seconds(), o.Clusters, r.JoinTime.Round(time.Millisecond))
	fmt.Fprintf(w, "record load:          %.0f writes/s (%d records in %s)\n", float64(r.Records-o.Clusters)/r.LoadTime.Seconds(), r.Records, r.LoadTime.Round(time.Millisecond))
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "fan-out, one endpoint change to all %d watchers (%d changes): p50 %s  p99 %s  max %s (target p99 < 1s: %s)\n",
		o.Clusters, o.Changes, r.FanoutP50.Round(time.Microsecond), r.FanoutP99.Round(time.Microsecond), r.FanoutMax.Round(time.Microsecond), met(r.FanoutP99 < time.Second))
	fmt.Fprintf(w, "broker RSS:           %.0f MiB (target < 1024 MiB: %s)\n", float64(r.RSSBytes)/(1<<20), met(r.RSSBytes < 1<<30))
}
