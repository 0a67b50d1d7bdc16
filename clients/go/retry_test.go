package lensd

// The client against an in-process gRPC server that fails calls on purpose: a call that fails
// UNAVAILABLE is retried and names its model in x-lensd-model metadata (what a balancer routes
// by); SubmitJob is not retried (a second try would queue a second job).

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/lensd/lensd/clients/go/lensdpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type flakyServer struct {
	lensdpb.UnimplementedLensServer
	lensdpb.UnimplementedTrainingServer
	mu      sync.Mutex
	decodes int
	submits int
	models  []string
}

func (s *flakyServer) Decode(ctx context.Context, r *lensdpb.DecodeRequest) (*lensdpb.DecodeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decodes++
	md, _ := metadata.FromIncomingContext(ctx)
	s.models = append(s.models, md.Get("x-lensd-model")...)
	if s.decodes == 1 {
		return nil, status.Error(codes.Unavailable, "a replica went away")
	}
	return &lensdpb.DecodeResponse{Model: r.Model}, nil
}

func (s *flakyServer) SubmitJob(context.Context, *lensdpb.SubmitJobRequest) (*lensdpb.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.submits++
	return nil, status.Error(codes.Unavailable, "a replica went away")
}

func TestUnavailableIsRetriedButNotForSubmitJobAndCallsNameTheirModel(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &flakyServer{}
	server := grpc.NewServer()
	lensdpb.RegisterLensServer(server, fake)
	lensdpb.RegisterTrainingServer(server, fake)
	go server.Serve(listener)
	defer server.Stop()

	client, err := Dial(listener.Addr().String(), WithToken(""), WithModel("kjv-copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Lens.Decode(context.Background(),
		&lensdpb.DecodeRequest{Model: "kjv-copy", Input: Text("In the beginning")}); err != nil {
		t.Fatalf("Decode after one UNAVAILABLE: %v", err)
	}
	_, err = client.Training.SubmitJob(context.Background(), &lensdpb.SubmitJobRequest{Model: "kjv-copy"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("SubmitJob: got %v, want UNAVAILABLE", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.decodes != 2 {
		t.Errorf("Decode reached the server %d times, want 2 (one retry)", fake.decodes)
	}
	if fake.submits != 1 {
		t.Errorf("SubmitJob reached the server %d times, want 1 (not retried)", fake.submits)
	}
	if len(fake.models) != 2 || fake.models[0] != "kjv-copy" {
		t.Errorf("x-lensd-model on each Decode: got %v, want [kjv-copy kjv-copy]", fake.models)
	}
}
