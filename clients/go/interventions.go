package lensd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/lensd/lensd/clients/go/lensdpb"
	"google.golang.org/protobuf/encoding/protojson"
)

// Float32s is a [len] float32 tensor for interventions (a steering vector, a value to set).
func Float32s(values []float32) *lensdpb.Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return &lensdpb.Tensor{Dtype: "float32", Shape: []int64{int64(len(values))}, Data: data}
}

// Steer adds coefficient x vector at a hook point (every position; in Generate, every step).
func Steer(hookPoint string, vector []float32, coefficient float64) *lensdpb.Intervention {
	return &lensdpb.Intervention{HookPoint: hookPoint, Operation: &lensdpb.Intervention_Add{
		Add: &lensdpb.Steer{Vector: Float32s(vector), Coefficient: &coefficient}}}
}

// Ablate zero-ablates a hook point at the given positions (nil: all).
func Ablate(hookPoint string, positions ...int64) *lensdpb.Intervention {
	return &lensdpb.Intervention{HookPoint: hookPoint, Positions: positions,
		Operation: &lensdpb.Intervention_Zero{Zero: true}}
}

// AblateHeads zero-ablates heads of a layer (their blocks.<layer>.attn.hook_z).
func AblateHeads(layer int64, heads ...int64) *lensdpb.Intervention {
	return &lensdpb.Intervention{HookPoint: "blocks." + strconv.FormatInt(layer, 10) + ".attn.hook_z", Heads: heads,
		Operation: &lensdpb.Intervention_Zero{Zero: true}}
}

// Patch takes the hook point's value on source (activation patching; positions align).
func Patch(hookPoint string, source *lensdpb.Input, positions ...int64) *lensdpb.Intervention {
	return &lensdpb.Intervention{HookPoint: hookPoint, Positions: positions,
		Operation: &lensdpb.Intervention_Patch{Patch: source}}
}

// ClampSae clamps one feature of a loaded SAE at its hook point (error term kept).
func ClampSae(sae string, feature int64, value float64) *lensdpb.Intervention {
	return &lensdpb.Intervention{Operation: &lensdpb.Intervention_SaeClamp{
		SaeClamp: &lensdpb.SaeClamp{Sae: sae, Feature: feature, Value: value}}}
}

// PatchingOptions are ActivationPatching's fields besides the two inputs.
type PatchingOptions struct {
	Model     string
	Metric    *lensdpb.Metric // default: the loss of the last token's prediction
	Sweeps    []*lensdpb.PatchingSweep
	Noising   bool
	Layers    []int64
	Positions []int64
	// Progress (optional) is called after each batched pass.
	Progress func(done, total int64)
}

func (c *Client) patchingRequest(clean, corrupted *lensdpb.Input, o PatchingOptions) *lensdpb.ActivationPatchingRequest {
	request := &lensdpb.ActivationPatchingRequest{
		Model: c.or(o.Model), Clean: clean, Corrupted: corrupted, Metric: o.Metric,
		Sweeps: o.Sweeps, Layers: o.Layers, Positions: o.Positions,
	}
	if o.Noising {
		request.Direction = lensdpb.PatchingDirection_PATCHING_DIRECTION_NOISING
	}
	return request
}

// SubmitPatching queues the sweeps as a durable job (train role): it outlives the connection
// and a server restart (it starts over); its steps count patched runs. Follow it with WatchJob
// and read its grids with PatchingResultOf. Progress in o is not used.
func (c *Client) SubmitPatching(ctx context.Context, clean, corrupted *lensdpb.Input, o PatchingOptions) (*lensdpb.Job, error) {
	sweep := c.patchingRequest(clean, corrupted, o)
	model := sweep.Model
	sweep.Model = ""
	job, err := c.Training.SubmitJob(ctx, &lensdpb.SubmitJobRequest{
		Model: model, Kind: &lensdpb.SubmitJobRequest_ActivationPatching{ActivationPatching: sweep},
	})
	return job, wrap("SubmitJob", err)
}

// PatchingResultOf reads the grids of a finished patching job.
func PatchingResultOf(job *lensdpb.Job) (*lensdpb.ActivationPatchingResult, error) {
	if job.Kind != "patch" {
		return nil, fmt.Errorf("job %s is a %q job, not a patching one", job.Id, job.Kind)
	}
	if job.ResultJson == "" {
		return nil, fmt.Errorf("job %s has no result yet (%s: %s)", job.Id, job.State, job.Reason)
	}
	result := &lensdpb.ActivationPatchingResult{}
	if err := protojson.Unmarshal([]byte(job.ResultJson), result); err != nil {
		return nil, fmt.Errorf("job %s: its result_json: %w", job.Id, err)
	}
	return result, nil
}

// ActivationPatching runs patching sweeps (TransformerLens's patching module) on the server and
// returns the grids.
func (c *Client) ActivationPatching(ctx context.Context, clean, corrupted *lensdpb.Input, o PatchingOptions) (*lensdpb.ActivationPatchingResult, error) {
	request := c.patchingRequest(clean, corrupted, o)
	for message, err := range stream("ActivationPatching", func() (lensdpb.Lens_ActivationPatchingClient, error) {
		return c.Lens.ActivationPatching(withModel(ctx, request.Model), request)
	}) {
		if err != nil {
			return nil, err
		}
		if p := message.GetProgress(); p != nil {
			if o.Progress != nil {
				o.Progress(p.Done, p.Total)
			}
		} else if r := message.GetResult(); r != nil {
			return r, nil
		}
	}
	return nil, errors.New("ActivationPatching: the stream ended without a result")
}
