// Package bench measures weft's data path against baselines measured in the
// same run (stock wireguard-go, bare veth) and prints figures and ratios.
// Benchmarks are not pass/fail tests: they report.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"time"

	"github.com/weftnet/weft/internal/nspair"
)

// iperfResult is the part of iperf3's JSON report we use.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// IperfTCP runs one iperf3 TCP stream from namespace client to server
// (which runs a one-shot iperf3 server in namespace serverNS) and returns
// the received bit rate.
func IperfTCP(ctx context.Context, serverNS, clientNS, serverAddr string, d time.Duration) (float64, error) {
	port := "5201"
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", serverNS, "iperf3", "-s", "-1", "-p", port)
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("iperf3 server in %s: %w", serverNS, err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	// Wait for the server to listen (a condition, not a sleep-and-hope).
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := nspair.Exec(ctx, serverNS, "ss", "-Hltn", "sport", "= :"+port)
		if len(out) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("iperf3 server in %s did not listen on %s", serverNS, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	secs := strconv.Itoa(int(d.Seconds()))
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", clientNS, "iperf3", "-c", serverAddr, "-p", port, "-t", secs, "-J").Output()
	bps, perr := parseIperf(string(out), err)
	if perr != nil {
		return 0, fmt.Errorf("client in %s: %w", clientNS, perr)
	}
	return bps, nil
}

// parseIperf reads iperf3's JSON report.
func parseIperf(out string, runErr error) (float64, error) {
	var r iperfResult
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		return 0, fmt.Errorf("iperf3: %v (output not JSON: %v)", runErr, jerr)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// median of a non-empty slice.
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
