package lensd

import (
	"context"
	"iter"
	"strconv"
	"time"

	"github.com/lensd/lensd/clients/go/lensdpb"
	"google.golang.org/grpc/codes"
)

// DecodeOptions are Decode's optional fields; zero values take the server's defaults.
type DecodeOptions struct {
	Model      string  // default: the client's
	Lens       string  // "logit" (default) or a loaded tuned lens
	Layers     []int64 // default all
	Positions  []int64 // default all
	TopK       int32   // default 5
	Statistics []lensdpb.Statistic
	// Edits applied while the model runs (Steer, Ablate, Patch, ...).
	Interventions []*lensdpb.Intervention
}

// DecodeResult is a Decode response with helpers for its grid of rows (lens layers, then the
// model's output) by positions.
type DecodeResult struct {
	*lensdpb.DecodeResponse
}

// RowLabels are "0", "1", ..., "output".
func (r DecodeResult) RowLabels() []string {
	labels := make([]string, len(r.Rows))
	for i, row := range r.Rows {
		if row.IsOutput {
			labels[i] = "output"
		} else {
			labels[i] = strconv.FormatInt(row.Layer, 10)
		}
	}
	return labels
}

// Top1 is row i's most likely token at each decoded position ("" where a cell has none).
func (r DecodeResult) Top1(i int) []string {
	out := make([]string, len(r.Rows[i].Cells))
	for j, cell := range r.Rows[i].Cells {
		if len(cell.Top) > 0 {
			out[j] = cell.Top[0].Text
		}
	}
	return out
}

// Decode decodes the prompt at every requested layer through a lens.
func (c *Client) Decode(ctx context.Context, prompt *lensdpb.Input, o DecodeOptions) (DecodeResult, error) {
	request := &lensdpb.DecodeRequest{
		Model: c.or(o.Model), Input: prompt, Lens: o.Lens, Layers: o.Layers,
		Positions: o.Positions, Statistics: o.Statistics, Interventions: o.Interventions,
	}
	if o.TopK > 0 {
		request.TopK = &o.TopK
	}
	response, err := c.Lens.Decode(ctx, request)
	return DecodeResult{response}, wrap("Decode", err)
}

// GenerateOptions are Generate's optional fields.
type GenerateOptions struct {
	Model        string
	Lens         string // "logit" (default) or a loaded tuned lens
	Layer        *int64 // read-out layer; nil: the model's own output
	MaxNewTokens int32  // default the server's (32)
	Greedy       bool
	Seed         uint64
	// Edits applied at every step; AlsoUnedited adds the continuation without them.
	Interventions []*lensdpb.Intervention
	AlsoUnedited  bool
}

// Generate streams the tokens sampled from a lens as they are produced; the iteration ends after
// the finished token or at the first error. Cancel ctx to stop early.
func (c *Client) Generate(ctx context.Context, prompt *lensdpb.Input, o GenerateOptions) iter.Seq2[*lensdpb.GenerateResponse, error] {
	request := &lensdpb.GenerateRequest{
		Model: c.or(o.Model), Input: prompt, Lens: o.Lens, Layer: o.Layer, Greedy: o.Greedy,
		Seed: o.Seed, Interventions: o.Interventions, AlsoUnedited: o.AlsoUnedited,
	}
	if o.MaxNewTokens > 0 {
		request.MaxNewTokens = &o.MaxNewTokens
	}
	return stream("Generate", func() (lensdpb.Lens_GenerateClient, error) {
		return c.Lens.Generate(withModel(ctx, request.Model), request)
	})
}

// WatchJob streams a job's state on every change until it finishes. A stream broken by
// UNAVAILABLE (its server gone, behind a balancer) is opened again, up to 5 times in a row: each
// message is the job's whole state, so the watch goes on where it was.
func (c *Client) WatchJob(ctx context.Context, id string) iter.Seq2[*lensdpb.Job, error] {
	return func(yield func(*lensdpb.Job, error) bool) {
		for broken := 0; ; broken++ {
			var last error
			for job, err := range stream("WatchJob", func() (lensdpb.Training_WatchJobClient, error) {
				return c.Training.WatchJob(ctx, &lensdpb.WatchJobRequest{Id: id})
			}) {
				if err != nil {
					last = err
					break
				}
				broken = 0
				if !yield(job, nil) {
					return
				}
			}
			if last == nil {
				return
			}
			if Code(last) != codes.Unavailable || broken >= 5 || ctx.Err() != nil {
				yield(nil, last)
				return
			}
			time.Sleep(time.Duration(100<<broken) * time.Millisecond)
		}
	}
}

func (c *Client) or(model string) string {
	if model == "" {
		return c.model
	}
	return model
}
