// Command bench-bare serves internal/benchref, the bare net/http map server that
// scripts/bench-load.sh measures the Storage API against. A benchmark reference only.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/sre-instrumentation/storage-api/internal/benchref"
)

func main() {
	addr := flag.String("listen-address", "127.0.0.1:5001", "address to listen on")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: benchref.New().Handler(nil), ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
