// Tests of the Go client against a live lensd (server_test.go): Decode agrees with lensctl's
// JSON for the same prompt, Generate streams as an iterator, auth failures and deadlines come
// back as their gRPC codes, the README example runs, and lensdpb matches proto/.
package lensd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lensd "github.com/lensd/lensd/clients/go"
	"github.com/lensd/lensd/clients/go/lensdpb"
	"google.golang.org/grpc/codes"
)

const prompt = "And God said, Let there be light: and there was"

var server *testServer

func TestMain(m *testing.M) {
	var err error
	server, err = startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	server.stop()
	os.Exit(code)
}

func dial(t *testing.T, role string) *lensd.Client {
	t.Helper()
	client, err := lensd.Dial(server.address, lensd.WithToken(server.tokens[role]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func TestDecodeAgreesWithLensctl(t *testing.T) {
	client := dial(t, "read")
	result, err := client.Decode(context.Background(), lensd.Text(prompt), lensd.DecodeOptions{Lens: "tuned", TopK: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(result.RowLabels(), ","); got != "0,1,2,3,4,5,output" {
		t.Fatalf("rows %s", got)
	}
	lensctl := envOr("LENSCTL_BINARY", filepath.Join(repo, "build", "clients", "cli", "lensctl"))
	cmd := exec.Command(lensctl, "decode", "--json", "--lens", "tuned", "--top_k", "3", prompt)
	cmd.Env = append(os.Environ(), "LENSD_ADDRESS="+server.address, "LENSD_TOKEN="+server.tokens["read"])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lensctl: %v", err)
	}
	var theirs struct {
		Rows []struct {
			Cells []struct {
				Top []struct {
					ID string `json:"id"`
				} `json:"top"`
			} `json:"cells"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(out, &theirs); err != nil {
		t.Fatal(err)
	}
	if len(theirs.Rows) != len(result.Rows) {
		t.Fatalf("%d rows, lensctl %d", len(result.Rows), len(theirs.Rows))
	}
	for i, row := range result.Rows {
		for j, cell := range row.Cells {
			for k, top := range cell.Top {
				if want := theirs.Rows[i].Cells[j].Top[k].ID; fmt.Sprint(top.Id) != want {
					t.Errorf("row %d position %d rank %d: %d, lensctl %s", i, j, k, top.Id, want)
				}
			}
		}
	}
}

func TestGenerateStreamsTokens(t *testing.T) {
	client := dial(t, "read")
	layer := int64(3)
	var steps []int64
	var last *lensdpb.GenerateResponse
	for token, err := range client.Generate(context.Background(), lensd.Text(prompt),
		lensd.GenerateOptions{Lens: "tuned", Layer: &layer, Greedy: true, MaxNewTokens: 6}) {
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, token.Step)
		last = token
	}
	if fmt.Sprint(steps) != "[0 1 2 3 4 5]" || !last.Finished || last.FinishReason != "length" {
		t.Fatalf("steps %v, last %v", steps, last)
	}
}

func TestAuthFailuresCarryTheirCodes(t *testing.T) {
	anonymous, err := lensd.Dial(server.address, lensd.WithToken(""))
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()
	_, err = anonymous.Decode(context.Background(), lensd.Text(prompt), lensd.DecodeOptions{})
	if lensd.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	_, err = dial(t, "read").Models.LoadLens(context.Background(), &lensdpb.LoadLensRequest{Model: "kjv-gpt2", Lens: "tuned"})
	if lensd.Code(err) != codes.PermissionDenied {
		t.Fatalf("read token loading a lens: %v", err)
	}
	_, err = dial(t, "read").Decode(context.Background(), lensd.Text(prompt), lensd.DecodeOptions{Layers: []int64{9}})
	var e *lensd.Error
	if lensd.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "layers") ||
		!errors.As(err, &e) || e.Method != "Decode" {
		t.Fatalf("bad layer: %v", err)
	}
}

func TestADeadlineStopsAGeneration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var last error
	for _, err := range dial(t, "read").Generate(ctx, lensd.Text(prompt), lensd.GenerateOptions{MaxNewTokens: 240}) {
		last = err
	}
	if lensd.Code(last) != codes.DeadlineExceeded {
		t.Fatalf("got %v", last)
	}
}

func TestTheReadmeExampleRuns(t *testing.T) {
	cmd := exec.Command("go", "run", "./example", "-lens", "tuned", prompt)
	cmd.Env = append(os.Environ(), "LENSD_ADDRESS="+server.address, "LENSD_TOKEN="+server.tokens["read"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 8 || !strings.HasPrefix(lines[6], "output") || !strings.HasPrefix(lines[7], prompt) {
		t.Fatalf("output:\n%s", out)
	}
}

func TestGeneratedCodeMatchesTheProtos(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("bash", "generate.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}
	files, _ := filepath.Glob("lensdpb/*.go")
	if len(files) == 0 {
		t.Fatal("no lensdpb/*.go")
	}
	for _, f := range files {
		want, _ := os.ReadFile(filepath.Join(dir, f))
		got, _ := os.ReadFile(f)
		if string(want) != string(got) {
			t.Errorf("%s is stale: run bash clients/go/generate.sh", f)
		}
	}
}

func TestNodeAttributionAgreesWithLensctl(t *testing.T) {
	client := dial(t, "read")
	result, err := client.NodeAttribution(context.Background(), lensd.Text(prompt), lensd.NodeAttributionOptions{
		Saes: []string{"res3-topk"}, TopN: 10, Sign: lensdpb.SignConvention_SIGN_CONVENTION_TOKEN_TRACE,
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := result.Rows()
	if len(rows) != 10 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.ActType == "feature" && abs(r.IE-r.Value*r.Grad) > 1e-4*(1+abs(r.IE)) {
			t.Errorf("ie %v != value %v x grad %v", r.IE, r.Value, r.Grad)
		}
	}
	lensctl := envOr("LENSCTL_BINARY", filepath.Join(repo, "build", "clients", "cli", "lensctl"))
	cmd := exec.Command(lensctl, "attribute", "--json", "--saes", "res3-topk", "--top_n", "10",
		"--token_trace_sign", prompt)
	cmd.Env = append(os.Environ(), "LENSD_ADDRESS="+server.address, "LENSD_TOKEN="+server.tokens["read"])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lensctl: %v", err)
	}
	var fromCli struct {
		Nodes []struct {
			TokenIdx string  `json:"tokenIdx"` // int64 as a JSON string; omitted when 0
			Effect   float32 `json:"effect"`
		}
	}
	if err := json.Unmarshal(out, &fromCli); err != nil {
		t.Fatal(err)
	}
	if len(fromCli.Nodes) != len(rows) {
		t.Fatalf("lensctl printed %d nodes", len(fromCli.Nodes))
	}
	for i, n := range fromCli.Nodes {
		if n.TokenIdx == "" {
			n.TokenIdx = "0"
		}
		if n.TokenIdx != fmt.Sprint(rows[i].TokenIdx) || n.Effect != rows[i].Effect {
			t.Errorf("node %d: lensctl %+v, Go %+v", i, n, rows[i])
		}
	}
	if _, err := client.NodeAttribution(context.Background(), lensd.Text(prompt), lensd.NodeAttributionOptions{Saes: []string{"nope"}}); lensd.Code(err) != codes.NotFound {
		t.Fatalf("unknown SAE: %v", err)
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestInterventionsAndActivationPatching(t *testing.T) {
	client := dial(t, "read")
	ctx := context.Background()
	plain, err := client.Decode(ctx, lensd.Text(prompt), lensd.DecodeOptions{Layers: []int64{0}, TopK: 1})
	if err != nil {
		t.Fatal(err)
	}
	vector := make([]float32, 128)
	for i := range vector {
		vector[i] = float32(i%7) - 3
	}
	steered, err := client.Decode(ctx, lensd.Text(prompt), lensd.DecodeOptions{Layers: []int64{0}, TopK: 1,
		Interventions: []*lensdpb.Intervention{lensd.Steer("blocks.2.hook_resid_pre", vector, 8)}})
	if err != nil {
		t.Fatal(err)
	}
	before, after := plain.Rows[1].Cells, steered.Rows[1].Cells
	changed := false
	for j := range before {
		changed = changed || abs(before[j].Top[0].Prob-after[j].Top[0].Prob) > 1e-3
	}
	if !changed {
		t.Fatal("steering by 8 x v changed no output probability")
	}
	_, err = client.Decode(ctx, lensd.Text(prompt), lensd.DecodeOptions{
		Interventions: []*lensdpb.Intervention{lensd.AblateHeads(0, 9)}})
	if lensd.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "interventions[0].heads") {
		t.Fatalf("head 9 of 4: %v", err)
	}
	var progress int
	result, err := client.ActivationPatching(ctx, lensd.Text(prompt), lensd.Text(prompt), lensd.PatchingOptions{
		Sweeps:   []*lensdpb.PatchingSweep{{Site: lensdpb.PatchingSite_PATCHING_SITE_Z, AllPositions: true}},
		Progress: func(done, total int64) { progress++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	grid := result.Grids[0]
	if grid.Name != "z_all_pos" || fmt.Sprint(grid.Shape) != "[6 4]" || progress == 0 {
		t.Fatalf("grid %s %v after %d progress messages", grid.Name, grid.Shape, progress)
	}
	// Clean and corrupted are the same input: every patch leaves the metric as it is.
	for _, m := range grid.Metric {
		if abs(m-float32(result.CleanMetric)) > 1e-4 {
			t.Fatalf("patching a run with itself moved the metric to %v (clean %v)", m, result.CleanMetric)
		}
	}
}

func TestPatchingJobGivesTheGridsOfTheCall(t *testing.T) {
	ctx := context.Background()
	corrupted := strings.Replace(prompt, "God", "Moses", 1)
	options := lensd.PatchingOptions{
		Sweeps: []*lensdpb.PatchingSweep{{Site: lensdpb.PatchingSite_PATCHING_SITE_RESID_PRE}}}
	streamed, err := dial(t, "read").ActivationPatching(ctx, lensd.Text(prompt), lensd.Text(corrupted), options)
	if err != nil {
		t.Fatal(err)
	}
	client := dial(t, "admin")
	job, err := client.SubmitPatching(ctx, lensd.Text(prompt), lensd.Text(corrupted), options)
	if err != nil {
		t.Fatal(err)
	}
	for update, err := range client.WatchJob(ctx, job.Id) {
		if err != nil {
			t.Fatal(err)
		}
		job = update
	}
	if job.State != lensdpb.JobState_JOB_STATE_SUCCEEDED || job.Step != streamed.PatchedRuns {
		t.Fatalf("job %s ended %s at %d/%d: %s", job.Id, job.State, job.Step, job.NumSteps, job.Reason)
	}
	result, err := lensd.PatchingResultOf(job)
	if err != nil {
		t.Fatal(err)
	}
	want, got := streamed.Grids[0].Metric, result.Grids[0].Metric
	if len(got) != len(want) {
		t.Fatalf("%d cells from the job, %d from the call", len(got), len(want))
	}
	for i := range want {
		if abs(got[i]-want[i]) > 1e-6 {
			t.Fatalf("cell %d: %v from the job, %v from the call", i, got[i], want[i])
		}
	}
	if _, err := lensd.PatchingResultOf(&lensdpb.Job{Id: "x", Kind: "train"}); err == nil {
		t.Fatal("a training job read as a patching one")
	}
}
