// Package wireguard manages weft's WireGuard device behind one small
// interface with two backends:
//
//   - kernel: a netlink link of type wireguard configured with wgctrl;
//   - userspace: embedded wireguard-go (golang.zx2c4.com/wireguard) over a
//     TUN device, with the UAPI socket in /var/run/wireguard so `wg show`
//     works on it. Its buffer pools are bounded (see
//     third_party/wireguard-go/WEFT-PATCHES.md).
//
// Callers describe the desired configuration ([Config]); [Diff] computes the
// minimal change from what the device reports ([State]) to it, and a device's
// Apply sends only that change: unchanged peers are left alone, so their
// handshakes and sessions survive reconfiguration. Private keys never appear
// in logs or formatted output.
package wireguard
