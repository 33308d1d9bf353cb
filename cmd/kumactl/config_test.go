package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigControlPlanesLifecycle(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cp := newFakeCP(t, map[string]route{"GET /": {http.StatusOK, `{"hostname":"cp-2","product":"Kuma","version":"0.1.0","instanceId":"cp-2","clusterId":"c"}`}})
	down := closedAddress(t)

	// One address down, one up: the check passes.
	r := kumactl(t, "", "config", "control-planes", "add", "--name", "ha", "--address", down+","+cp.URL)
	wantCode(t, r, 0)
	if r.stdout != "added Control Plane \"ha\"\nswitched active Control Plane to \"ha\"\n" {
		t.Errorf("add stdout:\n%s", r.stdout)
	}
	path := filepath.Join(home, ".kumactl", "config")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("config file not written at $HOME/.kumactl/config: %v", err)
	}
	for _, want := range []string{"currentContext: ha", "url: " + down, "- " + cp.URL} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config file lacks %q:\n%s", want, data)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
	}

	// Same name again: refused without --overwrite.
	r = kumactl(t, "", "config", "control-planes", "add", "--name", "ha", "--address", cp.URL)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `Control Plane with name "ha" already exists. Use --overwrite`) {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	// Unreachable: refused unless --skip-check.
	r = kumactl(t, "", "config", "control-planes", "add", "--name", "dead", "--address", down)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "could not connect to the Control Plane API Server") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	r = kumactl(t, "", "config", "control-planes", "add", "--name", "dead", "--address", down, "--skip-check")
	wantCode(t, r, 0)

	r = kumactl(t, "", "config", "control-planes", "list")
	wantCode(t, r, 0)
	wantList := "ACTIVE   NAME    ADDRESS\n" +
		"         local   http://localhost:5681\n" +
		"         ha      " + down + "," + cp.URL + "\n" +
		"*        dead    " + down + "\n"
	if r.stdout != wantList {
		t.Errorf("list:\n%s\nwant:\n%s", r.stdout, wantList)
	}

	r = kumactl(t, "", "config", "control-planes", "switch", "--name", "ha")
	wantCode(t, r, 0)
	if r.stdout != "switched active Control Plane to \"ha\"\n" {
		t.Errorf("switch stdout:\n%s", r.stdout)
	}
	r = kumactl(t, "", "config", "control-planes", "switch", "--name", "nope")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `there is no Control Plane with name "nope"`) {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	// The active control plane is used, with failover past the dead address.
	r = kumactl(t, "", "version")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "Server: Kuma 0.1.0") {
		t.Errorf("version:\n%s\n%s", r.stdout, r.stderr)
	}

	r = kumactl(t, "", "config", "control-planes", "remove", "--name", "ha")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "removed Control Plane \"ha\"\n") {
		t.Errorf("remove stdout:\n%s", r.stdout)
	}
	r = kumactl(t, "", "config", "view")
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, "name: ha") || !strings.Contains(r.stdout, "currentContext: local") {
		t.Errorf("view after remove:\n%s", r.stdout)
	}
}

func TestConfigFileErrorsNameTheField(t *testing.T) {
	path := writeFile(t, "config", "controlPlanes:\n- name: a\n  coordinates:\n    apiServer:\n      url: not-a-url\ncontexts: []\n")
	r := kumactl(t, "", "--config-file", path, "get", "meshes")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "controlPlanes[0].coordinates.apiServer.urls[0]") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

func TestVersionWithoutServer(t *testing.T) {
	cfg := writeConfig(t, closedAddress(t))
	r := kumactl(t, "", "--config-file", cfg, "version")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "Client: Kuma ") || !strings.Contains(r.stderr, "Unable to connect to control plane") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"apply", "--help"}, {"get", "--help"}, {"get", "dataplanes", "--help"},
		{"delete", "--help"}, {"inspect", "cluster", "--help"}, {"config", "control-planes", "add", "--help"}, {"version", "--help"},
	} {
		r := kumactl(t, "", args...)
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: no usage:\n%s", args, r.stdout)
		}
	}
}
