// Package s3test runs a real S3 server for tests: versitygw (Apache-2.0) serving a posix
// directory on a free 127.0.0.1 port. The binary is built by `tools/install.sh versitygw`
// into .tools/bin; tests fail without it, except under -short, where they skip.
//
// The server can be stopped (killed), frozen (SIGSTOP) and restarted on the same port and
// directory, to test how clients behave while the object store is down and after it
// comes back.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sre-instrumentation/storage-api/internal/testkit"
)

// Credentials of the server's root account; test-only.
const (
	AccessKey = "storage-api-test"
	SecretKey = "storage-api-test-secret"
	Region    = "us-east-1"
)

// startTimeout bounds waiting for the server to accept requests.
const startTimeout = 20 * time.Second

// Binary returns the path of the versitygw binary, failing the test (or skipping it under
// -short) when it has not been built: testkit.Tool's rule.
func Binary(t testing.TB) string {
	t.Helper()
	return testkit.Tool(t, "versitygw")
}

// Server is a running versitygw.
type Server struct {
	// Addr is host:port, Endpoint its http URL.
	Addr, Endpoint string
	// Dir is the posix directory served; it survives Stop and Restart.
	Dir string

	t   testing.TB
	bin string
	log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts versitygw on a free loopback port; it is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tmp := t.TempDir()
	s := &Server{
		Addr:     addr,
		Endpoint: "http://" + addr,
		Dir:      filepath.Join(tmp, "data"),
		t:        t,
		bin:      bin,
		log:      filepath.Join(tmp, "versitygw.log"),
	}
	if err := os.Mkdir(s.Dir, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Restart starts the server again on the same port and directory, after Stop, and waits
// until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("s3test: Restart while the server is running")
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	// --keep-alive: like real S3 services (versitygw closes each connection by default).
	cmd := exec.Command(s.bin, "--port", s.Addr, "--keep-alive", "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("s3test: start versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	// Any HTTP answer (an S3 error for the anonymous request) means it is serving.
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("s3test: versitygw exited at start:\n%s", s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("s3test: versitygw not answering on %s after %v:\n%s", s.Addr, startTimeout, s.Log())
		}
	}
}

// Stop kills the server (SIGKILL: as abrupt as a crash or a network cut) and waits
// for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Freeze suspends the server (SIGSTOP): connections stay open but nothing answers, which
// is how an overloaded or partitioned store looks to a client. Thaw resumes it.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("s3test: server not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Log returns what the server has written so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	const tail = 4000
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

// Env is the AWS environment a client of this server needs (credentials, region, and
// isolation from the machine's own AWS configuration). The endpoint is not included:
// pass Endpoint explicitly or add AWS_ENDPOINT_URL.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PROFILE=",
		"AWS_SESSION_TOKEN=",
		"AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_S3=",
	}
}

// SetEnv sets Env in this process for the rest of the test (so code using the standard
// AWS credential chain, like s3.Open, talks to this server's account).
func (s *Server) SetEnv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Client returns an SDK client for this server, independent of the environment.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// NewBucket creates a bucket with a unique name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v\n%s", name, err, s.Log())
	}
	return name
}

// String is for messages.
func (s *Server) String() string { return fmt.Sprintf("versitygw at %s serving %s", s.Addr, s.Dir) }
