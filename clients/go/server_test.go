package lensd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// testServer is the real lensd ($LENSD_BINARY, default ../../build/server/lensd) on a free
// loopback port with auth on, serving a private repository with the demo model, its tuned lens
// and its SAE.
type testServer struct {
	address string
	tokens  map[string]string // role -> token
	cmd     *exec.Cmd
	dir     string
}

var (
	repo   = mustAbs("../..")
	binary = envOr("LENSD_BINARY", filepath.Join(repo, "build", "server", "lensd"))
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func startServer() (*testServer, error) {
	dir, err := os.MkdirTemp("", "lensd-go-")
	if err != nil {
		return nil, err
	}
	s := &testServer{tokens: map[string]string{}, dir: dir}
	var lines []string
	for _, role := range []string{"admin", "read"} {
		out, err := exec.Command(binary, "token", "--tenant=go-"+role, "--role="+role).Output()
		if err != nil {
			return nil, fmt.Errorf("%s token: %w (build lensd or set LENSD_BINARY)", binary, err)
		}
		scanner := bufio.NewScanner(strings.NewReader(string(out)))
		for scanner.Scan() {
			if v, ok := strings.CutPrefix(scanner.Text(), "token: "); ok {
				s.tokens[role] = v
			}
			if v, ok := strings.CutPrefix(scanner.Text(), "tokens file line: "); ok {
				lines = append(lines, v)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	demo := filepath.Join(repo, "deploy", "models", "kjv-gpt2")
	model := filepath.Join(dir, "repo", "kjv-gpt2")
	if err := os.MkdirAll(filepath.Join(model, "lenses"), 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(demo)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Name() != "lenses" {
			if err := os.Symlink(filepath.Join(demo, e.Name()), filepath.Join(model, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if err := os.Symlink(filepath.Join(demo, "lenses", "tuned"), filepath.Join(model, "lenses", "tuned")); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "lensd.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(binary, "--model_repository="+filepath.Join(dir, "repo"),
		"--models=kjv-gpt2", "--lenses=kjv-gpt2/tuned", "--saes=kjv-gpt2/res3-topk",
		"--tokens_file="+filepath.Join(dir, "tokens.txt"),
		"--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
		"--port_file="+filepath.Join(dir, "port.json"), "--state_dir="+filepath.Join(dir, "state"),
		"--log_requests=false")
	s.cmd.Stderr = log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 600; i++ {
		text, _ := os.ReadFile(filepath.Join(dir, "lensd.log"))
		port, _ := os.ReadFile(filepath.Join(dir, "port.json"))
		if len(port) > 0 && strings.Contains(string(text), "serving") {
			var p struct{ Port int }
			if err := json.Unmarshal(port, &p); err != nil {
				return nil, err
			}
			s.address = fmt.Sprintf("127.0.0.1:%d", p.Port)
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "lensd.log"))
	s.stop()
	return nil, fmt.Errorf("lensd did not start:\n%s", text)
}

func (s *testServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		_ = s.cmd.Wait()
	}
	_ = os.RemoveAll(s.dir)
}
