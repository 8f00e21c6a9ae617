// Package s3 stores objects in a bucket of any S3-compatible service (AWS S3, MinIO, Ceph
// RGW, SeaweedFS, versitygw), so that several stateless API replicas can share one store.
//
// Each id is one S3 object under Prefix (see key.go for the key layout). The object's
// Content-Type is the stored content type, and the SHA-256 ETag the API serves is kept as
// user metadata (x-amz-meta-sha256), computed on PUT like the other backends do.
//
// Credentials, region and endpoint come from the standard AWS chain (AWS_ACCESS_KEY_ID,
// AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL(_S3), web identity, ...), overridden by Config.
//
// Every remote failure other than "no such key" (network errors, timeouts, 5xx,
// throttling, access denied, missing bucket) is returned wrapping storage.ErrUnavailable,
// so the API answers 503 and readiness fails until the service is back; the store
// recovers by itself, without reopening.
//
// The store does not implement storage.StatsReporter: counting objects would mean listing
// the bucket.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/sre-instrumentation/storage-api/internal/storage"
)

// Config selects the bucket and bounds the time spent on each call. Zero values mean the
// defaults given per field.
type Config struct {
	// Bucket must exist; the store never creates it.
	Bucket string
	// Prefix is prepended to every key, e.g. "storage-api/" (at most 769 bytes).
	Prefix string
	// Endpoint is the service URL, e.g. "http://minio:9000". Empty: the SDK's own
	// resolution (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, shared config, then AWS S3).
	Endpoint string
	// Region overrides AWS_REGION and the shared config; when neither sets one,
	// "us-east-1" (what most S3-compatible servers expect).
	Region string
	// PathStyle addresses the bucket as endpoint/bucket/key instead of
	// bucket.endpoint/key; most self-hosted servers need it.
	PathStyle bool

	// Timeout bounds one operation, retries included (default 10s). For Get it covers
	// the wait for the response headers; the body is then bounded by ReadTimeout and the
	// caller's context.
	Timeout time.Duration
	// ReadyTimeout bounds the readiness probe's HeadBucket (default 2s; never retried).
	ReadyTimeout time.Duration
	// ConnectTimeout bounds establishing a TCP connection (default 2s).
	ConnectTimeout time.Duration
	// ReadTimeout fails a connection that delivers no byte for this long (default 10s),
	// so a stalled server cannot hold a request or a streamed body forever.
	ReadTimeout time.Duration
	// MaxAttempts is the number of tries of one request, first included (default 3).
	// Only errors the SDK deems retryable (connection errors, 5xx, throttling) are retried.
	MaxAttempts int
	// MaxBackoff caps the jittered wait between tries (default 200ms): the API's
	// clients are waiting, so retries must be quick or not at all.
	MaxBackoff time.Duration
	// MaxIdleConns is the number of keep-alive connections kept to the service
	// (default 64), enough that concurrent requests do not open a connection each.
	MaxIdleConns int
	// ConditionalWrites declares that the service applies If-Match / If-None-Match on
	// PutObject and If-Match on DeleteObject atomically with the write, as AWS S3 does.
	// Only then are the API's preconditions (storage.Condition) enforced, by a
	// compare-and-swap on the service's ETag (see putIf). Without it a write with a
	// condition is refused with storage.ErrConditionUnsupported: a service that checks
	// the condition before writing (versitygw v1.8.0's posix backend does) could let
	// two guarded writers both succeed, a lost update the client was guarding against.
	ConditionalWrites bool
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 10*time.Second)
	def(&c.ReadyTimeout, 2*time.Second)
	def(&c.ConnectTimeout, 2*time.Second)
	def(&c.ReadTimeout, 10*time.Second)
	def(&c.MaxBackoff, 200*time.Millisecond)
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = 64
	}
}

// metaETag is the user-metadata key holding the SHA-256 ETag (header x-amz-meta-sha256).
const metaETag = "sha256"

// Store is an S3-backed storage.Store.
type Store struct {
	client *s3.Client
	bucket string
	prefix string
	cfg    Config

	// base is cancelled by Close, which aborts in-flight calls.
	base   context.Context
	cancel context.CancelFunc
	closed atomic.Bool

	// noConditional is set once the server answers 501 to a conditional PUT; Put then
	// falls back to HeadObject + PutObject (see Put).
	noConditional atomic.Bool
}

var _ storage.Store = (*Store)(nil)

// Open returns a store for cfg.Bucket. It does no network I/O: the API must be able to
// start while the service is down (readiness reports it), so a wrong bucket or
// credentials show up in Ready and as ErrUnavailable from operations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket name is required")
	}
	if len(cfg.Prefix) > maxPrefixLen || !utf8.ValidString(cfg.Prefix) {
		return nil, fmt.Errorf("s3: prefix must be valid UTF-8 of at most %d bytes", maxPrefixLen)
	}
	cfg.setDefaults()

	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = cfg.ConnectTimeout }).
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = cfg.MaxIdleConns
			tr.MaxIdleConnsPerHost = cfg.MaxIdleConns
		}).
		WithReadTimeout(cfg.ReadTimeout)
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff
			})
		}),
		// Checksums only where S3 requires them: the default (CRC on every PUT, sent as an
		// aws-chunked trailer) is not understood by every S3-compatible server, and the
		// content is already covered by SigV4 payload signing or TLS, and our SHA-256.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	base, cancel := context.WithCancel(context.Background())
	return &Store{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix, cfg: cfg, base: base, cancel: cancel}, nil
}

// Causes of an operation's context ending that are the store's doing, as opposed to
// the caller's (a client that went away is not an unavailable store).
var (
	errTimeout = errors.New("timed out")
	errClosed  = errors.New("s3 store is closed")
)

// op is one operation's context: the caller's, cancelled after timeout and by Close.
type op struct {
	ctx   context.Context
	timer *time.Timer
	stop  func() bool
	cause context.CancelCauseFunc
}

func (s *Store) begin(parent context.Context, timeout time.Duration) (*op, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("%w: %w", storage.ErrUnavailable, errClosed)
	}
	ctx, cancel := context.WithCancelCause(parent)
	return &op{
		ctx:   ctx,
		timer: time.AfterFunc(timeout, func() { cancel(errTimeout) }),
		stop:  context.AfterFunc(s.base, func() { cancel(errClosed) }),
		cause: cancel,
	}, nil
}

// end releases the operation's resources (for Get: when the body is closed).
func (o *op) end() {
	o.timer.Stop()
	o.stop()
	o.cause(nil)
}

// Put stores data. Without a condition, created comes from a conditional write
// (If-None-Match: *), so that of several concurrent first PUTs of an id exactly one
// reports created, as with the local backends, even across replicas:
//
//  1. HeadObject. Found: unconditional PutObject, created=false.
//  2. Missing: PutObject with If-None-Match: *. Success: created=true.
//  3. 412 Precondition Failed (someone created it since): unconditional PutObject,
//     created=false.
//
// Remaining race: a DELETE between the check and the unconditional write means this PUT
// re-creates the object but reports 204 instead of 201. Servers without conditional
// writes (501) get HeadObject + PutObject, where two concurrent first PUTs can both
// report created.
//
// With a condition, see putIf: the write is a compare-and-swap on the service's own
// ETag when Config.ConditionalWrites says the service applies conditions atomically;
// otherwise, or when the service answers 501, ErrConditionUnsupported.
func (s *Store) Put(ctx context.Context, id, contentType string, data []byte, cond storage.Condition) (storage.PutResult, error) {
	info := storage.NewInfo(contentType, data)
	var created bool
	var err error
	if cond.IsZero() {
		created, err = s.put(ctx, id, contentType, info.ETag, data)
	} else {
		created, err = s.putIf(ctx, id, contentType, info.ETag, data, cond)
	}
	if err != nil {
		return storage.PutResult{}, err
	}
	return storage.PutResult{Info: info, Created: created}, nil
}

func (s *Store) put(ctx context.Context, id, contentType, etag string, data []byte) (bool, error) {
	o, err := s.begin(ctx, s.cfg.Timeout)
	if err != nil {
		return false, err
	}
	defer o.end()
	ctx = o.ctx
	key := s.key(id)

	_, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	switch err := s.mapError(ctx, "HeadObject", err); {
	case err == nil:
		return false, s.putObject(ctx, key, contentType, etag, data, nil, nil)
	case !errors.Is(err, storage.ErrNotFound):
		return false, err
	}
	if s.noConditional.Load() {
		return true, s.putObject(ctx, key, contentType, etag, data, nil, nil)
	}
	err = s.putObject(ctx, key, contentType, etag, data, nil, aws.String("*"))
	switch {
	case err == nil:
		return true, nil
	case conflict(err):
		return false, s.putObject(ctx, key, contentType, etag, data, nil, nil)
	case hasStatus(err, http.StatusNotImplemented):
		s.noConditional.Store(true)
		return true, s.putObject(ctx, key, contentType, etag, data, nil, nil)
	}
	return false, s.mapError(ctx, "PutObject", err)
}

// maxCASAttempts bounds the compare-and-swap loop of a conditional write when other
// writers keep changing the object between our HeadObject and our write.
const maxCASAttempts = 5

// putIf is a Put guarded by cond. Our ETag (SHA-256, in user metadata) is not the one the
// service compares in its own If-Match, so each attempt is:
//
//  1. HeadObject: whether the object exists, its SHA-256 and the service's ETag.
//  2. cond evaluated on that state: false → ErrPreconditionFailed, nothing written.
//  3. PutObject guarded by the state just read: If-Match: <service ETag> when it existed,
//     If-None-Match: * when not. The service applies it only if the object is still the
//     one cond was evaluated against, so cond held at the moment of the write.
//  4. 412/409 from the service: the object changed in between; start again from 1.
//
// A server that answers 501 to a conditional write cannot enforce cond:
// ErrConditionUnsupported, never an unguarded write.
func (s *Store) putIf(ctx context.Context, id, contentType, etag string, data []byte, cond storage.Condition) (bool, error) {
	if !s.cfg.ConditionalWrites || s.noConditional.Load() {
		return false, errUnsupported("PutObject")
	}
	o, err := s.begin(ctx, s.cfg.Timeout)
	if err != nil {
		return false, err
	}
	defer o.end()
	ctx = o.ctx
	key := s.key(id)
	for range maxCASAttempts {
		cur, exists, err := s.head(ctx, key)
		if err != nil {
			return false, err
		}
		if err := cond.Check(exists, cur.ETag); err != nil {
			return false, err
		}
		var ifMatch, ifNoneMatch *string
		if exists {
			ifMatch = cur.s3ETag
		} else {
			ifNoneMatch = aws.String("*")
		}
		err = s.putObject(ctx, key, contentType, etag, data, ifMatch, ifNoneMatch)
		switch {
		case err == nil:
			return !exists, nil
		case conflict(err) || (exists && isNotFound(err)):
			continue // changed (or deleted) since HeadObject: evaluate again
		case hasStatus(err, http.StatusNotImplemented):
			s.noConditional.Store(true)
			return false, errUnsupported("PutObject")
		}
		return false, s.mapError(ctx, "PutObject", err)
	}
	return false, fmt.Errorf("%w: s3 PutObject: %q kept changing during %d conditional attempts", storage.ErrUnavailable, key, maxCASAttempts)
}

// current is what head read of an existing object.
type current struct {
	storage.Info
	s3ETag *string // the service's ETag, as it sent it (quoted)
}

// head reads the object's state; a missing object is not an error.
func (s *Store) head(ctx context.Context, key string) (current, bool, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	switch err := s.mapError(ctx, "HeadObject", err); {
	case errors.Is(err, storage.ErrNotFound):
		return current{}, false, nil
	case err != nil:
		return current{}, false, err
	}
	if out.ETag == nil {
		// Without the service's ETag there is nothing to guard the write with.
		return current{}, false, fmt.Errorf("%w: s3 HeadObject %q: no ETag in the response", storage.ErrUnavailable, key)
	}
	return current{Info: info(out.ContentType, out.Metadata, out.ETag, out.ContentLength), s3ETag: out.ETag}, true, nil
}

// conflict reports whether a conditional request failed because the object is not in
// the state it was guarded with: 412, or 409 ConditionalRequestConflict (AWS's answer
// when a concurrent write to the key is in progress).
func conflict(err error) bool {
	return hasStatus(err, http.StatusPreconditionFailed) || hasCode(err, "ConditionalRequestConflict")
}

func errUnsupported(op string) error {
	return fmt.Errorf("%w: conditional S3 %s is not enabled (-s3-conditional-writes) or not implemented by the service", storage.ErrConditionUnsupported, op)
}

// putObject writes the object, guarded by the service's If-Match / If-None-Match when
// given. A guarded write returns the raw SDK error, so that callers can tell 412 from
// other failures; an unguarded one the mapped error.
func (s *Store) putObject(ctx context.Context, key, contentType, etag string, data []byte, ifMatch, ifNoneMatch *string) error {
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		Metadata:      map[string]string{metaETag: etag},
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	in.IfMatch, in.IfNoneMatch = ifMatch, ifNoneMatch
	_, err := s.client.PutObject(ctx, in)
	if ifMatch != nil || ifNoneMatch != nil {
		return err
	}
	return s.mapError(ctx, "PutObject", err)
}

// Get streams the object: Body is the HTTP response body, not a copy. The operation
// timeout stops once the headers arrive; a stalled body fails after ReadTimeout.
func (s *Store) Get(ctx context.Context, id string) (*storage.Object, error) {
	o, err := s.begin(ctx, s.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	key := s.key(id)
	out, err := s.client.GetObject(o.ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		err = s.mapError(o.ctx, "GetObject", err)
		o.end()
		return nil, err
	}
	o.timer.Stop()
	return &storage.Object{
		Info: info(out.ContentType, out.Metadata, out.ETag, out.ContentLength),
		Body: &body{ReadCloser: out.Body, release: o.end},
	}, nil
}

// body releases the operation's context when the caller closes it.
type body struct {
	io.ReadCloser
	release func()
	once    sync.Once
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// Stat reads the object's metadata with HeadObject.
func (s *Store) Stat(ctx context.Context, id string) (storage.Info, error) {
	o, err := s.begin(ctx, s.cfg.Timeout)
	if err != nil {
		return storage.Info{}, err
	}
	defer o.end()
	key := s.key(id)
	out, err := s.client.HeadObject(o.ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return storage.Info{}, s.mapError(o.ctx, "HeadObject", err)
	}
	return info(out.ContentType, out.Metadata, out.ETag, out.ContentLength), nil
}

func info(contentType *string, meta map[string]string, s3ETag *string, size *int64) storage.Info {
	etag := meta[metaETag]
	if etag == "" {
		// Written by another tool: fall back to the service's own ETag (an MD5 for
		// single-part uploads), still a valid validator for If-None-Match.
		etag = strings.Trim(aws.ToString(s3ETag), `"`)
	}
	return storage.Info{ContentType: aws.ToString(contentType), ETag: etag, Size: aws.ToInt64(size)}
}

// Delete removes the object. S3's DeleteObject succeeds on a missing key, so the 404 the
// API must answer needs a HeadObject first. Race: two concurrent DELETEs of one id can
// both find it and both report success (the local backends report one 404).
//
// With cond.IfMatch (and Config.ConditionalWrites), the DeleteObject is guarded by the
// service's If-Match on the ETag HeadObject read (a compare-and-swap, as in putIf). S3
// has no If-None-Match on DeleteObject: a cond with IfNoneMatch is refused with
// ErrConditionUnsupported, as is any cond without ConditionalWrites or on a server that
// answers 501.
func (s *Store) Delete(ctx context.Context, id string, cond storage.Condition) error {
	if cond.IfNoneMatch != nil {
		return fmt.Errorf("%w: S3 DeleteObject has no If-None-Match", storage.ErrConditionUnsupported)
	}
	if cond.IfMatch != nil && (!s.cfg.ConditionalWrites || s.noConditional.Load()) {
		return errUnsupported("DeleteObject")
	}
	o, err := s.begin(ctx, s.cfg.Timeout)
	if err != nil {
		return err
	}
	defer o.end()
	key := s.key(id)
	for range maxCASAttempts {
		cur, exists, err := s.head(o.ctx, key)
		if err != nil {
			return err
		}
		if !exists {
			return storage.ErrNotFound
		}
		if err := cond.Check(true, cur.ETag); err != nil {
			return err
		}
		in := &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}
		if cond.IfMatch != nil {
			in.IfMatch = cur.s3ETag
		}
		_, err = s.client.DeleteObject(o.ctx, in)
		switch {
		case err == nil:
			return nil
		case in.IfMatch == nil:
			return s.mapError(o.ctx, "DeleteObject", err)
		case conflict(err) || isNotFound(err):
			continue // changed or deleted since HeadObject: evaluate again
		case hasStatus(err, http.StatusNotImplemented):
			s.noConditional.Store(true)
			return errUnsupported("DeleteObject")
		}
		return s.mapError(o.ctx, "DeleteObject", err)
	}
	return fmt.Errorf("%w: s3 DeleteObject: %q kept changing during %d conditional attempts", storage.ErrUnavailable, key, maxCASAttempts)
}

// Ready checks that the bucket is reachable and accessible: one HeadBucket, not retried,
// within ReadyTimeout.
func (s *Store) Ready(ctx context.Context) error {
	o, err := s.begin(ctx, s.cfg.ReadyTimeout)
	if err != nil {
		return err
	}
	defer o.end()
	_, err = s.client.HeadBucket(o.ctx, &s3.HeadBucketInput{Bucket: &s.bucket},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		// Even a 404 here means the store is unusable, not that an object is missing;
		// and a failed probe is "not ready" whoever cancelled it.
		return fmt.Errorf("%w: s3 bucket %q: %w", storage.ErrUnavailable, s.bucket, describe(o.ctx, err))
	}
	return nil
}

// Close aborts in-flight calls; every later call returns ErrUnavailable.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.cancel()
	return nil
}

// mapError turns an SDK error into the storage package's: no such key → ErrNotFound; the
// caller's own cancellation or deadline → that context error, unwrapped (the client gave
// up, the store is not at fault); anything else, including this store's timeout and
// Close → ErrUnavailable wrapping the cause.
func (s *Store) mapError(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return storage.ErrNotFound
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); !errors.Is(cause, errTimeout) && !errors.Is(cause, errClosed) {
			return fmt.Errorf("s3 %s: %w", op, cause)
		}
	}
	if s.closed.Load() {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, errClosed)
	}
	return fmt.Errorf("%w: s3 %s: %w", storage.ErrUnavailable, op, describe(ctx, err))
}

// describe adds the store's timeout to err when that is what ended the call (the SDK
// only says "context canceled").
func describe(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errTimeout) {
		return fmt.Errorf("%w (%w)", errTimeout, err)
	}
	return err
}

// isNotFound reports whether err says the key does not exist. GetObject answers
// NoSuchKey; HeadObject has no body, so only its 404 status (modelled as NotFound) says
// so. NoSuchBucket is not "not found": the store is misconfigured.
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) || hasCode(err, "NoSuchKey") {
		return true
	}
	return hasStatus(err, http.StatusNotFound) && !hasCode(err, "NoSuchBucket")
}

func hasCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

func hasStatus(err error, status int) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == status
}
