package admission

import (
	"fmt"
	"syscall"
)

// Reserve is how many overflow connections a ConnLimiter keeps over its limit for the
// operational routes.
const Reserve = 16

// fdHeadroom is the file descriptors kept for everything but client connections: the
// listener, the store's file, log output, outgoing connections to S3 or a tracing
// collector, and the runtime's own.
const fdHeadroom = 80

// defaultMaxConnections is the limit when none is configured and the descriptor limit
// allows it. Each open connection costs about 16 KiB (buffers and a goroutine stack),
// so 1024 of them stay within a small container's memory (docs/reliability.md).
const defaultMaxConnections = 1024

// MaxConnections returns the connection limit to use: configured if set, else
// min(1024, file descriptor limit - Reserve - headroom). A configured limit that, with
// its reserve, would not leave the headroom free is an error: the server would run out
// of descriptors before it refused anyone, and its accept loop would stall.
func MaxConnections(configured int) (int, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("read the file descriptor limit: %w", err)
	}
	// Go raises the soft limit to the hard one at start-up; Cur is what we have.
	avail := int64(rl.Cur) - Reserve - fdHeadroom
	if configured == 0 {
		if avail < 1 {
			return 0, fmt.Errorf("file descriptor limit %d is too low to serve: need more than %d", rl.Cur, Reserve+fdHeadroom)
		}
		return int(min(defaultMaxConnections, avail)), nil
	}
	if int64(configured) > avail {
		return 0, fmt.Errorf("-max-connections %d: too high for the file descriptor limit %d (at most %d, keeping %d for probes and %d for the process)",
			configured, rl.Cur, avail, Reserve, fdHeadroom)
	}
	return configured, nil
}
