// deploy/grafana/dashboards/lensd.json decoded strictly into the Grafana Foundation SDK's
// dashboard types, its panels checked to draw only metrics lensd exports (the names registered in
// server/metrics.cc, with a histogram's _bucket, _sum and _count series), and the Prometheus and
// Grafana provisioning files decoded.
package validate

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"sigs.k8s.io/yaml"
)

var metricName = regexp.MustCompile(`\blensd_[a-z_]+\b`)

// exported is every series name server/metrics.cc registers, histograms with their suffixes.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	source, err := os.ReadFile("../../server/metrics.cc")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(lensd_[a-z_]+)"`).FindAllStringSubmatch(string(source), -1) {
		names[m[1]] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in server/metrics.cc", len(names))
	}
	return names
}

// loadDashboard decodes the dashboard strictly, and each panel on its own too: the SDK's strict
// decoders take the empty error list they get back from a nested strict decode for a failure
// and drop the value (panels, their queries), so the values are read by its lenient decoder
// after the strict one found no error.
func loadDashboard(t *testing.T) (*dashboard.Dashboard, []dashboard.Panel) {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	raw, err := os.ReadFile("../grafana/dashboards/lensd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard.Dashboard
	if err := noErrors(d.UnmarshalJSONStrict(raw)); err != nil {
		t.Fatalf("lensd.json: %v", err)
	}
	var fields struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	panels := make([]dashboard.Panel, len(fields.Panels))
	for i, p := range fields.Panels {
		var strict dashboard.Panel
		if err := noErrors(strict.UnmarshalJSONStrict(p)); err != nil {
			t.Fatalf("lensd.json panels[%d]: %v", i, err)
		}
		if err := json.Unmarshal(p, &panels[i]); err != nil {
			t.Fatalf("lensd.json panels[%d]: %v", i, err)
		}
	}
	return &d, panels
}

// noErrors is err, or nil for the empty cog.BuildErrors the SDK's strict decoders return (as a
// non-nil error) when they found nothing wrong.
func noErrors(err error) error {
	if list, ok := err.(cog.BuildErrors); ok && len(list) == 0 {
		return nil
	}
	return err
}

func TestDashboardDecodesStrictlyAndDrawsLensdsMetrics(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.Title == nil || *d.Title != "lensd" || len(panels) == 0 {
		t.Fatalf("want the lensd dashboard with panels")
	}
	names := exported(t)
	want := map[string]bool{"requests": false, "latency": false, "queue": false, "batch": false,
		"tokens": false, "memory": false, "jobs": false}
	for _, p := range panels {
		title := ""
		if p.Title != nil {
			title = strings.ToLower(*p.Title)
		}
		for key := range want {
			want[key] = want[key] || strings.Contains(title, key)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", title)
		}
		raw, err := yaml.Marshal(p.Targets)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(raw), -1) {
			if !names[name] {
				t.Errorf("panel %q draws %s, which lensd does not export", title, name)
			}
		}
	}
	for key, found := range want {
		if !found {
			t.Errorf("no panel shows %s", key)
		}
	}
}

func TestProvisioningFilesDecode(t *testing.T) {
	type datasources struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool `json:"isDefault"`
		} `json:"datasources"`
	}
	raw, err := os.ReadFile("../grafana/provisioning/datasources/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds datasources
	if err := yaml.UnmarshalStrict(raw, &ds); err != nil || len(ds.Datasources) != 1 ||
		ds.Datasources[0].UID != "prometheus" {
		t.Fatalf("datasources: %v %+v", err, ds)
	}
	type scrape struct {
		Global        map[string]string `json:"global"`
		RuleFiles     []string          `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	raw, err = os.ReadFile("../prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var config scrape
	if err := yaml.UnmarshalStrict(raw, &config); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(config.ScrapeConfigs) != 1 || config.ScrapeConfigs[0].JobName != "lensd" {
		t.Errorf("prometheus.yml: want one scrape job named lensd (the alerts select job=\"lensd\")")
	}
}
