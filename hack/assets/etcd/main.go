// Command etcd is the etcd server at the version pinned in go.mod, built by
// hack/build-assets.sh for integration tests and the lab.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
