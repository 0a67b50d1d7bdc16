package lensd

import (
	"context"

	"github.com/lensd/lensd/clients/go/lensdpb"
)

// NodeAttributionOptions are NodeAttribution's optional fields (zero values: the server's
// defaults — every loaded SAE, the loss of the last token's prediction, a zero baseline,
// attribution patching, contracted error nodes, the patch-effect sign, every node).
type NodeAttributionOptions struct {
	Model        string
	Saes         []string
	Metric       *lensdpb.Metric
	Baseline     lensdpb.Baseline
	Patch        *lensdpb.Input   // BASELINE_PATCH
	Reference    []*lensdpb.Input // BASELINE_MEAN
	Method       lensdpb.Method
	IgSteps      int64 // 0: the server's 10
	ErrorNodes   lensdpb.ErrorNodes
	Sign         lensdpb.SignConvention
	TopN         int64
	MinAbsEffect float64
}

// NodeRow is one node with token-trace's DataFrame columns; IE is token-trace's
// (value - baseline) x grad whatever the request's sign convention.
type NodeRow struct {
	Sae, ModuleName, ModuleType, TokenStr, ActType string
	Layer, TokenIdx, Feature                       int64
	Value, Baseline, Grad, Effect, IE              float32
}

// NodeAttributionResult wraps the response.
type NodeAttributionResult struct {
	*lensdpb.NodeAttributionResponse
	Sign lensdpb.SignConvention
}

// Rows are the nodes as token-trace rows, largest |effect| first.
func (r NodeAttributionResult) Rows() []NodeRow {
	flip := float32(1)
	if r.Sign == lensdpb.SignConvention_SIGN_CONVENTION_PATCH_EFFECT {
		flip = -1
	}
	rows := make([]NodeRow, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		rows = append(rows, NodeRow{
			Sae: n.Sae, ModuleName: n.ModuleName, ModuleType: n.ModuleType, TokenStr: n.TokenStr,
			ActType: n.ActType, Layer: n.Layer, TokenIdx: n.TokenIdx, Feature: n.Feature,
			Value: n.Value, Baseline: n.Baseline, Grad: n.Grad, Effect: n.Effect, IE: flip * n.Effect,
		})
	}
	return rows
}

// NodeAttribution estimates the effect of every SAE feature and error node on a metric.
func (c *Client) NodeAttribution(ctx context.Context, prompt *lensdpb.Input, o NodeAttributionOptions) (NodeAttributionResult, error) {
	request := &lensdpb.NodeAttributionRequest{
		Model: c.or(o.Model), Input: prompt, Saes: o.Saes, Metric: o.Metric, Baseline: o.Baseline,
		Patch: o.Patch, Reference: o.Reference, Method: o.Method, ErrorNodes: o.ErrorNodes,
		SignConvention: o.Sign, TopN: o.TopN, MinAbsEffect: o.MinAbsEffect,
	}
	if o.IgSteps > 0 {
		request.IgSteps = &o.IgSteps
	}
	response, err := c.Attribution.NodeAttribution(ctx, request)
	return NodeAttributionResult{response, o.Sign}, wrap("NodeAttribution", err)
}

// EncodeSae returns the sparse features of the SAEs (none named: every loaded one), topK per
// position (0: every active one).
func (c *Client) EncodeSae(ctx context.Context, prompt *lensdpb.Input, saes []string, topK int64) (*lensdpb.EncodeSaeResponse, error) {
	request := &lensdpb.EncodeSaeRequest{Model: c.model, Input: prompt, Saes: saes, TopK: &topK}
	response, err := c.Attribution.EncodeSae(ctx, request)
	return response, wrap("EncodeSae", err)
}

// LayerAttribution splits the logit of the top-1 (or o.Target) token at the last position (or
// o.Position) into per-component direct effects: Values + Bias = Logit.
func (c *Client) LayerAttribution(ctx context.Context, prompt *lensdpb.Input, o *lensdpb.LayerAttributionRequest) (*lensdpb.LayerAttributionResponse, error) {
	if o == nil {
		o = &lensdpb.LayerAttributionRequest{}
	}
	o.Model, o.Input = c.or(o.Model), prompt
	response, err := c.Lens.LayerAttribution(ctx, o)
	return response, wrap("LayerAttribution", err)
}
