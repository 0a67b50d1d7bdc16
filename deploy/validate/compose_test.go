// deploy/compose/compose.yaml loaded by compose-go (the library docker compose itself uses), which
// checks it against the Compose specification's schema, then checked for what the stack needs:
// lensd with its health check and tokens secret, Prometheus with the rules of deploy/prometheus,
// Grafana with the provisioned dashboard, every service on the host network.
package validate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir, err := filepath.Abs("../compose")
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("lensd", true)
		o.Profiles = []string{"grafana"}
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return project
}

func mountsSource(s types.ServiceConfig, suffix string) bool {
	for _, v := range s.Volumes {
		if strings.HasSuffix(v.Source, suffix) {
			return true
		}
	}
	return false
}

func TestComposeStackFollowsTheSpecification(t *testing.T) {
	project := loadCompose(t)
	for _, name := range []string{"lensd", "prometheus", "grafana"} {
		s, err := project.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		if s.NetworkMode != "host" {
			t.Errorf("%s: network_mode %q, want host (loopback only)", name, s.NetworkMode)
		}
	}
	lensd, _ := project.GetService("lensd")
	if lensd.HealthCheck == nil || len(lensd.HealthCheck.Test) < 2 ||
		lensd.HealthCheck.Test[1] != "grpc_health_probe" {
		t.Errorf("lensd: want a grpc_health_probe health check, got %+v", lensd.HealthCheck)
	}
	if len(lensd.Secrets) != 1 || lensd.Secrets[0].Source != "lensd_tokens" {
		t.Errorf("lensd: want the lensd_tokens secret, got %+v", lensd.Secrets)
	}
	if !strings.Contains(strings.Join(lensd.Command, " "), "--tokens_file=/run/secrets/lensd_tokens") {
		t.Errorf("lensd: the command does not read the secret: %v", lensd.Command)
	}
	prometheus, _ := project.GetService("prometheus")
	if !mountsSource(prometheus, "deploy/prometheus/alerts.yml") ||
		!mountsSource(prometheus, "deploy/prometheus/prometheus.yml") {
		t.Errorf("prometheus: mounts %+v, want deploy/prometheus's config and rules",
			prometheus.Volumes)
	}
	grafana, _ := project.GetService("grafana")
	if !mountsSource(grafana, "deploy/grafana/dashboards") ||
		!mountsSource(grafana, "deploy/grafana/provisioning") {
		t.Errorf("grafana: mounts %+v, want the provisioning and dashboards", grafana.Volumes)
	}
}

func TestComposeRefusesWhatTheSpecificationDoesNot(t *testing.T) {
	dir := t.TempDir()
	details := types.ConfigDetails{WorkingDir: dir, ConfigFiles: []types.ConfigFile{{
		Filename: filepath.Join(dir, "compose.yaml"),
		Content:  []byte("services:\n  lensd:\n    image: lensd:cpu\n    netwrok_mode: host\n"),
	}}}
	_, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("x", true)
	})
	if err == nil {
		t.Fatal("a misspelt key (netwrok_mode) loaded without an error")
	}
}
