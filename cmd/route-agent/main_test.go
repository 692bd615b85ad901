package main

import (
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the netns test run this binary as the route agent: with
// WEFT_TEST_ROUTE_AGENT_MAIN=1 it is main, flags and all.
func TestMain(m *testing.M) {
	if os.Getenv("WEFT_TEST_ROUTE_AGENT_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseFlags(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "NODE_NAME" {
				return v
			}
			return ""
		}
	}
	lab := []string{"--kubeconfig", "/lab/kc", "--node-name", "c1-n2", "--cluster-cidrs", "10.1.0.0/16,10.96.0.0/16", "--wg-device", "weft-c1-1"}
	c, err := parseFlags(lab, env(""), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.kubeconfig != "/lab/kc" || c.nodeName != "c1-n2" || c.wgDevice != "weft-c1-1" || len(c.clusterCIDRs) != 2 ||
		c.clusterCIDRs[1] != netip.MustParsePrefix("10.96.0.0/16") || c.resync != 30*time.Second || c.tunnelMTU != 0 || c.cleanup {
		t.Fatalf("lab flags: %+v", c)
	}
	c, err = parseFlags([]string{"--cluster-cidrs", "10.1.0.0/16", "--pod-network-addr", "10.1.2.254", "--tunnel-mtu", "1400",
		"--cni-interface", "cbr0", "--resync", "5s", "--log-level", "debug"}, env("from-env"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.nodeName != "from-env" || c.wgDevice != "weft-wg" || c.podNetworkAddr != netip.MustParseAddr("10.1.2.254") ||
		c.tunnelMTU != 1400 || c.cniInterface != "cbr0" || c.resync != 5*time.Second || c.logLevel.String() != "DEBUG" {
		t.Fatalf("flags: %+v", c)
	}
	if c, err := parseFlags([]string{"--cleanup"}, env(""), io.Discard); err != nil || !c.cleanup {
		t.Fatalf("--cleanup alone: %+v, %v", c, err)
	}
	if _, err := parseFlags([]string{"-h"}, env(""), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-name", "n"}, "--cluster-cidrs is required"},
		{[]string{"--cluster-cidrs", "10.1.0.0/16"}, "--node-name is required"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0"}, "--cluster-cidrs: netip.ParsePrefix"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0/16", "--pod-network-addr", "x"}, "--pod-network-addr"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0/16", "--wg-device", "a-very-long-device-name"}, "--wg-device"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0/16", "--resync", "0s"}, "--resync 0s"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0/16", "--log-level", "loud"}, "--log-level"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.1.0.0/16", "extra"}, "unexpected arguments"},
	} {
		if _, err := parseFlags(tc.args, env(""), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}
