// The Kubernetes manifests of deploy/k8s, each document decoded strictly (unknown fields are
// errors) into the official API types, then checked for what lensd needs of them: gRPC probes on
// a declared port, a grace period longer than lensd's own drain, every mount backed by a volume,
// Services and budgets that select pods, GPU requests equal to limits.
package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests holds every object of deploy/k8s by kind.
type manifests struct {
	deployments    []appsv1.Deployment
	services       []corev1.Service
	budgets        []policyv1.PodDisruptionBudget
	claims         []corev1.PersistentVolumeClaim
	secrets        []corev1.Secret
	ingresses      []networkingv1.Ingress
	serviceMonitor []monitoringv1.ServiceMonitor
}

func decodeStrict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// add decodes one YAML document by its apiVersion and kind.
func (m *manifests) add(t *testing.T, where string, doc []byte) {
	var meta v1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		decodeStrict(t, where, doc, &o)
		m.deployments = append(m.deployments, o)
	case "v1 Service":
		var o corev1.Service
		decodeStrict(t, where, doc, &o)
		m.services = append(m.services, o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		decodeStrict(t, where, doc, &o)
		m.budgets = append(m.budgets, o)
	case "v1 PersistentVolumeClaim":
		var o corev1.PersistentVolumeClaim
		decodeStrict(t, where, doc, &o)
		m.claims = append(m.claims, o)
	case "v1 Secret":
		var o corev1.Secret
		decodeStrict(t, where, doc, &o)
		m.secrets = append(m.secrets, o)
	case "networking.k8s.io/v1 Ingress":
		var o networkingv1.Ingress
		decodeStrict(t, where, doc, &o)
		m.ingresses = append(m.ingresses, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var o monitoringv1.ServiceMonitor
		decodeStrict(t, where, doc, &o)
		m.serviceMonitor = append(m.serviceMonitor, o)
	default:
		t.Fatalf("%s: no API type for apiVersion %q kind %q", where, meta.APIVersion, meta.Kind)
	}
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("../k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	m := &manifests{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range separator.Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			m.add(t, fmt.Sprintf("%s document %d", filepath.Base(file), i+1), []byte(doc))
		}
	}
	return m
}

func stripComments(doc string) string {
	var out bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) < 2 || len(m.services) < 3 || len(m.budgets) < 2 || len(m.claims) != 2 ||
		len(m.secrets) != 2 || len(m.ingresses) != 1 || len(m.serviceMonitor) != 1 {
		t.Fatalf("unexpected set of objects: %d deployments, %d services, %d budgets, %d claims, "+
			"%d secrets, %d ingresses, %d service monitors", len(m.deployments), len(m.services),
			len(m.budgets), len(m.claims), len(m.secrets), len(m.ingresses), len(m.serviceMonitor))
	}
}

func TestAStrictDecodeRefusesAnUnknownField(t *testing.T) {
	var d appsv1.Deployment
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(doc, &d); err == nil {
		t.Fatal("a misspelt field (replica) decoded without an error")
	}
}

// flagValue is the value of --name=value among args ("" when absent).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if strings.HasPrefix(a, "--"+name+"=") {
			return strings.TrimPrefix(a, "--"+name+"=")
		}
	}
	return ""
}

func checkProbe(t *testing.T, where string, probe *corev1.Probe, ports map[int32]bool) {
	t.Helper()
	if probe == nil || probe.GRPC == nil {
		t.Errorf("%s: want a gRPC probe (grpc.health.v1)", where)
		return
	}
	if !ports[probe.GRPC.Port] {
		t.Errorf("%s: probes port %d, which the container does not declare", where, probe.GRPC.Port)
	}
}

func TestDeploymentsProbeDrainAndMountWhatTheyDeclare(t *testing.T) {
	for _, d := range loadManifests(t).deployments {
		spec := d.Spec.Template.Spec
		selector, err := v1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !selector.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the selector does not match the pod template's labels", d.Name)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
		}
		for _, c := range spec.Containers {
			where := d.Name + "/" + c.Name
			ports := map[int32]bool{}
			for _, p := range c.Ports {
				ports[p.ContainerPort] = true
			}
			checkProbe(t, where+" startupProbe", c.StartupProbe, ports)
			checkProbe(t, where+" readinessProbe", c.ReadinessProbe, ports)
			checkProbe(t, where+" livenessProbe", c.LivenessProbe, ports)
			grace, err := strconv.Atoi(flagValue(c.Args, "shutdown_grace_seconds"))
			if err != nil {
				t.Errorf("%s: --shutdown_grace_seconds missing or not a number", where)
			} else if spec.TerminationGracePeriodSeconds == nil ||
				*spec.TerminationGracePeriodSeconds < int64(grace)+10 {
				t.Errorf("%s: terminationGracePeriodSeconds must exceed --shutdown_grace_seconds=%d "+
					"by 10 s or more", where, grace)
			}
			if flagValue(c.Args, "tokens_file") == "" {
				t.Errorf("%s: lensd on 0.0.0.0 needs --tokens_file", where)
			}
			// Replicas share jobs: one PostgreSQL store, a name each, checkpoints where all see them.
			for _, flag := range []string{"job_store", "replica_id", "checkpoint_dir"} {
				if flagValue(c.Args, flag) == "" {
					t.Errorf("%s: --%s missing (the replicas share one job store)", where, flag)
				}
			}
			for _, mount := range c.VolumeMounts {
				if !volumes[mount.Name] {
					t.Errorf("%s: mounts %q, which the pod does not declare", where, mount.Name)
				}
			}
			gpus := c.Resources.Limits["nvidia.com/gpu"]
			if !gpus.Equal(c.Resources.Requests["nvidia.com/gpu"]) {
				t.Errorf("%s: nvidia.com/gpu requests and limits differ", where)
			}
			usesCuda := strings.Contains(flagValue(c.Args, "models"), ":cuda")
			if usesCuda != !gpus.IsZero() {
				t.Errorf("%s: a cuda model needs nvidia.com/gpu, and a GPU needs a cuda model", where)
			}
		}
		if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil ||
			!*spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pods must run as a non-root user", d.Name)
		}
	}
}

func TestEachGroupHasAServiceAndABudgetThatSelectItsPods(t *testing.T) {
	m := loadManifests(t)
	for _, d := range m.deployments {
		pods := labels.Set(d.Spec.Template.Labels)
		headless := false
		for _, s := range m.services {
			if s.Spec.ClusterIP == corev1.ClusterIPNone &&
				labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
				headless = true
			}
		}
		if !headless {
			t.Errorf("%s: no headless Service selects its pods", d.Name)
		}
		budgeted := false
		for _, b := range m.budgets {
			selector, err := v1.LabelSelectorAsSelector(b.Spec.Selector)
			if err == nil && selector.Matches(pods) {
				budgeted = true
			}
		}
		if !budgeted {
			t.Errorf("%s: no PodDisruptionBudget covers its pods", d.Name)
		}
	}
	for _, s := range m.services {
		matched := false
		for _, d := range m.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = true
				for _, p := range s.Spec.Ports {
					if !declaresPort(d.Spec.Template.Spec.Containers, p.TargetPort.StrVal) {
						t.Errorf("Service %s: targetPort %q is no named port of %s", s.Name,
							p.TargetPort.StrVal, d.Name)
					}
				}
			}
		}
		if !matched {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
		}
	}
}

func declaresPort(containers []corev1.Container, name string) bool {
	for _, c := range containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}
