// Package gateway is weft's gateway: it runs on every node labeled
// weft.io/gateway=true, and the one node of a cluster that holds the Lease
// "weft-gateway" (in the namespace weft-system) is the active gateway.
//
// The active gateway:
//
//   - reads the cluster's WireGuard key from the Secret "weft-gateway-key"
//     (key "privateKey", base64 as `wg genkey` prints it), creating it once
//     when absent; every gateway node of the cluster shares it, so after a
//     failover remote peers keep the same key and roam to the new address;
//   - reads its broker credentials from the Secret "weft-broker-credentials"
//     (key "credentials.json", pkg/broker/client.Credentials as JSON), or, when that
//     Secret is absent, joins the broker with the token in the Secret
//     "weft-broker-token" (key "token") and stores the credentials;
//   - owns the WireGuard device (no address: the route agent routes into it
//     with a source address), with MTU = MTU of the interface holding the
//     node's InternalIP minus 80;
//   - publishes its Endpoint at the broker and withdraws stale endpoints of
//     its own cluster left by former active gateways;
//   - peers with one gateway per remote cluster ([ComputeRemotes], a pure
//     function of the broker state);
//   - probes each remote gateway's health-check address through the tunnel
//     every second (ICMP echo, [Prober]);
//   - mirrors every remote cluster into a RemoteCluster object (named after
//     the cluster id) in weft-system, for route agents to read, and reports
//     its own state in the Gateway object named after its node.
//
// Passive gateways only write their Gateway object (haStatus passive) and
// wait for the Lease. An active gateway that loses the Lease closes its
// device and returns [ErrLostLeadership] from [Gateway.Run]; cmd/gateway then
// exits non-zero and the DaemonSet (or the lab) restarts it as a passive
// gateway. On a clean shutdown (context cancelled) the device is closed
// first and the Lease released afterwards, so a passive gateway takes over
// within one retry period.
//
// Until the broker watch has delivered its first snapshot, the active
// gateway configures its peers from the RemoteCluster objects a former
// active gateway wrote, and leaves those objects alone: a failover while the
// broker is down keeps the tunnels.
package gateway
