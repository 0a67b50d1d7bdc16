// Package lensd is the Go client of the lensd interpretability server: a connection with token
// credentials and the client version on every call, typed decode results, and Generate and
// WatchJob streams as iterators. The generated stubs are in package lensdpb.
//
//	client, err := lensd.Dial("gpu-box:50051", lensd.WithToken(token))
//	result, err := client.Decode(ctx, "And God said", lensd.DecodeOptions{Lens: "tuned"})
//	for i, label := range result.RowLabels() { fmt.Println(label, result.Top1(i)) }
package lensd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"time"

	"github.com/lensd/lensd/clients/go/lensdpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Version is sent to the server on every call (x-lensd-client-version).
const Version = "0.1.0"

// Client is a connection to a lensd server; safe for concurrent use.
type Client struct {
	conn     *grpc.ClientConn
	Models   lensdpb.ModelsClient
	Lens     lensdpb.LensClient
	Training lensdpb.TrainingClient
	// Attribution serves SAE features and node attribution.
	Attribution lensdpb.AttributionClient
	model       string
	timeout     time.Duration
}

type options struct {
	token   string
	tls     *tls.Config
	model   string
	timeout time.Duration
}

// Option configures Dial.
type Option func(*options)

// WithToken sets the bearer token (default: $LENSD_TOKEN).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS connects with TLS (nil config: the system's roots).
func WithTLS(config *tls.Config) Option {
	return func(o *options) {
		if config == nil {
			config = &tls.Config{}
		}
		o.tls = config
	}
}

// WithModel sets the model that calls use when their options name none (default kjv-gpt2).
func WithModel(model string) Option { return func(o *options) { o.model = model } }

// WithTimeout sets the deadline of calls whose context has none (default 60 s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// retryPolicy retries a call that failed UNAVAILABLE (a server restarting, or lost behind a
// balancer) up to 5 times with backoff, for every method but SubmitJob, which would queue a
// second job. A stream is retried only before its first message (WatchJob resumes itself).
const retryPolicy = `{"methodConfig": [{
  "name": [{"service": "lensd.v1.Lens"}, {"service": "lensd.v1.Models"},
           {"service": "lensd.v1.Attribution"},
           {"service": "lensd.v1.Training", "method": "GetJob"},
           {"service": "lensd.v1.Training", "method": "ListJobs"},
           {"service": "lensd.v1.Training", "method": "CancelJob"},
           {"service": "lensd.v1.Training", "method": "WatchJob"}],
  "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s",
                  "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// withModel names the call's model in metadata (x-lensd-model), which an L7 balancer in front of
// several servers routes by (deploy/haproxy).
func withModel(ctx context.Context, model string) context.Context {
	if model == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "x-lensd-model", model)
}

// Dial connects to address (default: $LENSD_ADDRESS, else 127.0.0.1:50051). The connection is
// made lazily; errors of the first call say why it could not be.
func Dial(address string, opts ...Option) (*Client, error) {
	o := options{token: os.Getenv("LENSD_TOKEN"), model: "kjv-gpt2", timeout: 60 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if address == "" {
		address = os.Getenv("LENSD_ADDRESS")
	}
	if address == "" {
		address = "127.0.0.1:50051"
	}
	transport := insecure.NewCredentials()
	if o.tls != nil {
		transport = credentials.NewTLS(o.tls)
	}
	c := &Client{model: o.model, timeout: o.timeout}
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultServiceConfig(retryPolicy),
		grpc.WithUnaryInterceptor(c.unaryInterceptor(o.token)),
		grpc.WithStreamInterceptor(c.streamInterceptor(o.token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("lensd: dial %s: %w", address, err)
	}
	c.conn = conn
	c.Models = lensdpb.NewModelsClient(conn)
	c.Lens = lensdpb.NewLensClient(conn)
	c.Training = lensdpb.NewTrainingClient(conn)
	c.Attribution = lensdpb.NewAttributionClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Error is a failed call: the gRPC code and the server's message, which names the field or file
// and what would be right.
type Error struct {
	Method  string
	Code    codes.Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", e.Method, e.Code, e.Message) }

// Code is the gRPC code of err (codes.OK for nil, codes.Unknown for other errors).
func Code(err error) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

func wrap(method string, err error) error {
	if err == nil {
		return nil
	}
	s, _ := status.FromError(err)
	return &Error{Method: method, Code: s.Code(), Message: s.Message()}
}

func (c *Client) outgoing(ctx context.Context, token string) context.Context {
	md := []string{"x-lensd-client-version", Version}
	if token != "" {
		md = append(md, "authorization", "Bearer "+token)
	}
	return metadata.AppendToOutgoingContext(ctx, md...)
}

func (c *Client) unaryInterceptor(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.timeout)
			defer cancel()
		}
		if named, ok := req.(interface{ GetModel() string }); ok {
			ctx = withModel(ctx, named.GetModel())
		}
		return invoker(c.outgoing(ctx, token), method, req, reply, cc, opts...)
	}
}

func (c *Client) streamInterceptor(token string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(c.outgoing(ctx, token), desc, cc, method, opts...)
	}
}

// Text is a prompt the server tokenizes; Tokens is one given as ids.
func Text(text string) *lensdpb.Input {
	return &lensdpb.Input{Kind: &lensdpb.Input_Text{Text: text}}
}

// Tokens is a prompt given as token ids.
func Tokens(ids ...int64) *lensdpb.Input {
	return &lensdpb.Input{Kind: &lensdpb.Input_Tokens{Tokens: &lensdpb.TokenIds{Ids: ids}}}
}

// stream turns a server stream into an iterator that ends after the last message or the first
// error (wrapped as *Error).
func stream[T any](method string, open func() (grpc.ServerStreamingClient[T], error)) iter.Seq2[*T, error] {
	return func(yield func(*T, error) bool) {
		s, err := open()
		if err != nil {
			yield(nil, wrap(method, err))
			return
		}
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, wrap(method, err))
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}
