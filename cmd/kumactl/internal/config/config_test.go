package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadMissingFileIsDefault(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	_, cp, err := cfg.Current()
	if err != nil || cp.Name != "local" || !reflect.DeepEqual(cp.Addresses(), []string{"http://localhost:5681"}) {
		t.Fatalf("default config: %+v %v", cp, err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config")
	cfg := Default()
	cfg.AddControlPlane(NewControlPlane("ha", []string{"http://a:5681", "http://b:5681"}), false)
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", got, cfg)
	}
	_, cp, _ := got.Current()
	if cp.Coordinates.APIServer.URL != "http://a:5681" || len(cp.Addresses()) != 2 {
		t.Fatalf("current: %+v", cp)
	}
}

func TestParseAddresses(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"http://a:1", []string{"http://a:1"}, ""},
		{" http://a:1/ , https://b:2,,http://a:1", []string{"http://a:1", "https://b:2"}, ""},
		{"", nil, "at least one address"},
		{"a:1", nil, "scheme must be http or https"},
		{"http://a:1,foo", nil, `"foo" is not a valid URL`},
		{"http://", nil, "host must not be empty"},
	}
	for _, tc := range tests {
		got, err := ParseAddresses(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  *Config
		want string
	}{
		{"dangling context", &Config{Contexts: []*Context{{Name: "x", ControlPlane: "y"}}}, `contexts[0].controlPlane: there is no control plane "y"`},
		{"no address", &Config{ControlPlanes: []*ControlPlane{{Name: "a"}}}, "controlPlanes[0].coordinates.apiServer.url: must not be empty"},
		{"duplicate", &Config{ControlPlanes: []*ControlPlane{NewControlPlane("a", []string{"http://h:1"}), NewControlPlane("a", []string{"http://h:1"})}}, `controlPlanes[1].name: duplicate name "a"`},
		{"bad current", &Config{CurrentContext: "z"}, `currentContext: there is no context "z"`},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestAddSwitchRemove(t *testing.T) {
	cfg := Default()
	if !cfg.AddControlPlane(NewControlPlane("a", []string{"http://a:1"}), false) {
		t.Fatal("add a")
	}
	if cfg.AddControlPlane(NewControlPlane("a", []string{"http://other:1"}), false) {
		t.Fatal("re-add without overwrite succeeded")
	}
	if !cfg.AddControlPlane(NewControlPlane("a", []string{"http://other:1"}), true) {
		t.Fatal("overwrite failed")
	}
	if cp, _ := cfg.ControlPlane("a"); cp.Addresses()[0] != "http://other:1" || len(cfg.ControlPlanes) != 2 || len(cfg.Contexts) != 2 {
		t.Fatalf("after overwrite: %+v", cfg)
	}
	if !cfg.Switch("local") || cfg.CurrentContext != "local" || cfg.Switch("nope") {
		t.Fatal("switch")
	}
	cfg.Switch("a")
	if !cfg.RemoveControlPlane("a") || cfg.CurrentContext != "local" || cfg.RemoveControlPlane("a") {
		t.Fatalf("remove: %+v", cfg)
	}
	cfg.RemoveControlPlane("local")
	if cfg.CurrentContext != "" {
		t.Fatalf("current after removing all: %q", cfg.CurrentContext)
	}
	if _, _, err := cfg.Current(); err == nil || !strings.Contains(err.Error(), "no active Control Plane") {
		t.Fatalf("Current with none: %v", err)
	}
}
