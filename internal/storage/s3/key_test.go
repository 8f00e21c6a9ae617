package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// unescape inverts objectName for spelled-out names; it exists to prove the mapping is
// injective (a function with a left inverse is).
func unescape(name string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b.WriteByte(name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", fmt.Errorf("truncated escape at %d", i)
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil || strings.ToUpper(name[i+1:i+3]) != name[i+1:i+3] {
			return "", fmt.Errorf("bad escape %q", name[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

func TestObjectName(t *testing.T) {
	long := strings.Repeat("x", 1024)
	tests := []struct {
		id, want string
	}{
		{"a", "a"},
		{"UPPER", "UPPER"},
		{"upper", "upper"},
		{"with space", "with%20space"},
		{"slash/inside", "slash%2Finside"},
		{"../dots", "%2E.%2Fdots"},
		{".", "%2E"},
		{"..", "%2E."},
		{"a.b", "a.b"},
		{"ünïcødé-日本", "ünïcødé-日本"},
		{"percent%2F", "percent%252F"},
		{"a?b#c", "a%3Fb%23c"},
		{"~x", "%7Ex"},
		{"tab\there", "tab%09here"},
		{"\xff\xfe", "%FF%FE"}, // invalid UTF-8: every high byte escaped
		{"é\xff", "%C3%A9%FF"}, // so keys stay valid UTF-8
		{strings.Repeat("y", 255), strings.Repeat("y", 255)},
		{"", hashedName("")},
		{strings.Repeat("y", 256), hashedName(strings.Repeat("y", 256))},
		{strings.Repeat("/", 86), hashedName(strings.Repeat("/", 86))}, // 258 bytes escaped
		{long, hashedName(long)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%.20q", tc.id), func(t *testing.T) {
			got := objectName(tc.id)
			if got != tc.want {
				t.Fatalf("objectName(%q) = %q, want %q", tc.id, got, tc.want)
			}
			if strings.Contains(got, "/") || got == "." || got == ".." || len(got) > maxNameLen || !utf8.ValidString(got) {
				t.Fatalf("objectName(%q) = %q is not a safe single path segment", tc.id, got)
			}
			if got[0] == hashedMark {
				if len(got) != 65 {
					t.Fatalf("hashed name %q has length %d", got, len(got))
				}
				return
			}
			back, err := unescape(got)
			if err != nil || back != tc.id {
				t.Fatalf("unescape(%q) = %q, %v; want %q", got, back, err, tc.id)
			}
		})
	}
}

// TestObjectNameDistinct checks that ids differing only in escaped characters, case, or
// length beyond the limit get distinct keys.
func TestObjectNameDistinct(t *testing.T) {
	ids := []string{
		"a", "A", "a/b", "a%2Fb", "a%252Fb", "a b", "a+b", "a%20b", ".a", "%2Ea", "~", "%7E",
		strings.Repeat("z", 255), strings.Repeat("z", 256), strings.Repeat("z", 257),
		strings.Repeat("z", 1023), strings.Repeat("z", 1024), "", " ",
		"~" + strings.Repeat("0", 64), hashedName("a")[1:],
	}
	seen := map[string]string{}
	for _, id := range ids {
		name := objectName(id)
		if other, dup := seen[name]; dup {
			t.Errorf("ids %q and %q share the name %q", other, id, name)
		}
		seen[name] = id
	}
}

func TestObjectNameStable(t *testing.T) {
	// Pinned: replicas of different versions must agree on where an id lives.
	long := strings.Repeat("x", 1024)
	if got, again := objectName(long), objectName(strings.Clone(long)); got != again {
		t.Fatalf("objectName is not deterministic: %q vs %q", got, again)
	}
	if got := hashedName("abc"); got != "~ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("hashedName(abc) = %q, want ~ + SHA-256(abc)", got)
	}
}

func TestOpenValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no bucket", Config{}},
		{"long prefix", Config{Bucket: "b", Prefix: strings.Repeat("p", maxPrefixLen+1)}},
		{"invalid prefix", Config{Bucket: "b", Prefix: "\xff"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Open(t.Context(), tc.cfg); err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func responseError(status int, apiErr error) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Op", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      apiErr,
		},
	}}
}

func TestMapError(t *testing.T) {
	s := &Store{}
	callerGone, cancel := context.WithCancel(context.Background())
	cancel()
	storeTimeout, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(errTimeout)
	canceledReq := &smithy.OperationError{Err: &smithy.CanceledError{Err: context.Canceled}}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"nil", nil, nil, nil},
		{"caller cancelled", callerGone, canceledReq, context.Canceled},
		{"store timeout", storeTimeout, canceledReq, storage.ErrUnavailable},
		{"not found beats cancellation", callerGone, responseError(404, &types.NoSuchKey{}), storage.ErrNotFound},
		{"GetObject NoSuchKey", nil, responseError(404, &types.NoSuchKey{}), storage.ErrNotFound},
		{"HeadObject NotFound", nil, responseError(404, &types.NotFound{}), storage.ErrNotFound},
		{"generic NoSuchKey", nil, responseError(404, &smithy.GenericAPIError{Code: "NoSuchKey"}), storage.ErrNotFound},
		{"bare 404", nil, responseError(404, &smithy.GenericAPIError{Code: "NotFound"}), storage.ErrNotFound},
		{"NoSuchBucket", nil, responseError(404, &smithy.GenericAPIError{Code: "NoSuchBucket"}), storage.ErrUnavailable},
		{"access denied", nil, responseError(403, &smithy.GenericAPIError{Code: "AccessDenied"}), storage.ErrUnavailable},
		{"slow down", nil, responseError(503, &smithy.GenericAPIError{Code: "SlowDown"}), storage.ErrUnavailable},
		{"internal error", nil, responseError(500, &smithy.GenericAPIError{Code: "InternalError"}), storage.ErrUnavailable},
		{"connection refused", nil, &smithy.OperationError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, storage.ErrUnavailable},
		{"deadline", nil, &smithy.OperationError{Err: context.DeadlineExceeded}, storage.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			got := s.mapError(ctx, "Op", tc.err)
			switch {
			case tc.want == nil && got != nil:
				t.Fatalf("mapError = %v, want nil", got)
			case tc.want != nil && !errors.Is(got, tc.want):
				t.Fatalf("mapError = %v, want %v", got, tc.want)
			case !errors.Is(tc.want, storage.ErrUnavailable) && errors.Is(got, storage.ErrUnavailable):
				t.Fatalf("mapError = %v, must not be ErrUnavailable", got)
			case errors.Is(got, storage.ErrUnavailable) && !errors.Is(got, tc.err):
				t.Fatalf("mapError = %v does not wrap the cause", got)
			}
		})
	}
	// The cause stays inspectable, e.g. a timeout.
	if err := s.mapError(context.Background(), "Op", &smithy.OperationError{Err: context.DeadlineExceeded}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("mapError hides context.DeadlineExceeded: %v", err)
	}
}

func TestClosedStore(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "x")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	// Port 1 on loopback: nothing listens, and a closed store must not even try.
	s, err := Open(t.Context(), Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ops := map[string]func() error{
		"Put":    func() error { _, err := s.Put(t.Context(), "a", "", nil, storage.Condition{}); return err },
		"Get":    func() error { _, err := s.Get(t.Context(), "a"); return err },
		"Stat":   func() error { _, err := s.Stat(t.Context(), "a"); return err },
		"Delete": func() error { return s.Delete(t.Context(), "a", storage.Condition{}) },
		"Ready":  func() error { return s.Ready(t.Context()) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
}

// FuzzObjectName: every id maps to one safe path segment within the length limit, and a
// spelled-out name decodes back to its id (so distinct ids never share a key).
func FuzzObjectName(f *testing.F) {
	for _, id := range []string{"a", "../x", "a/b", "%41", "~", ".", "ü", "\xff", strings.Repeat("/", 100)} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		name := objectName(id)
		if name == "" || strings.Contains(name, "/") || name == "." || name == ".." || len(name) > maxNameLen || !utf8.ValidString(name) {
			t.Fatalf("objectName(%q) = %q is not a safe path segment", id, name)
		}
		if name[0] == hashedMark {
			if name != hashedName(id) {
				t.Fatalf("objectName(%q) = %q starts with %q but is not the hashed name", id, name, hashedMark)
			}
			return
		}
		if back, err := unescape(name); err != nil || back != id {
			t.Fatalf("unescape(objectName(%q)) = %q, %v", id, back, err)
		}
	})
}
