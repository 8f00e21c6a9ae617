// Command etcd is the etcd server, built from the Go module proxy at the version kube-apiserver
// requires, for the server-side dry-run check of the chart (see ../../README.md).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
