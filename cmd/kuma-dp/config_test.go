package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kuma-ha/kuma-ha/cmd/internal/flagenv"
)

const goodDoc = `type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 8080
    servicePort: 80
    tags:
      kuma.io/service: web
`

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "dp.yaml")
	if err := os.WriteFile(good, []byte(goodDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		c := DefaultConfig()
		c.CPAddress = []string{"grpc://127.0.0.1:5678"}
		c.DataplaneFile = good
		c.Proxy = "builtin"
		return c
	}
	res, err := func() (*resolved, error) { c := base(); return c.Validate() }()
	if err != nil {
		t.Fatal(err)
	}
	if res.nodeID != "default.web-1" || len(res.servers) != 1 || res.servers[0] != "127.0.0.1:5678" || res.envoy != "" {
		t.Fatalf("resolved %+v", res)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // every one must appear in the error
	}{
		{"no cp address", func(c *Config) { c.CPAddress = nil }, []string{"--cp-address", "required"}},
		{"blank cp address", func(c *Config) { c.CPAddress = []string{"", " "} }, []string{"--cp-address", "required"}},
		{"http scheme", func(c *Config) { c.CPAddress = []string{"http://cp:5678"} }, []string{"--cp-address", `"http"`}},
		{"no port", func(c *Config) { c.CPAddress = []string{"grpc://cp"} }, []string{"--cp-address", "host:port"}},
		{"port out of range", func(c *Config) { c.CPAddress = []string{"cp:70000"} }, []string{"--cp-address", "70000"}},
		{"tls", func(c *Config) { c.CPAddress = []string{"grpcs://cp:5678"} }, []string{"--cp-address", "grpcs"}},
		{"missing file", func(c *Config) { c.DataplaneFile = filepath.Join(dir, "nope.yaml") }, []string{"--dataplane-file", "nope.yaml"}},
		{"both", func(c *Config) { c.Dataplane = goodDoc }, []string{"--dataplane-file, --dataplane", "not both"}},
		{"nothing", func(c *Config) { c.DataplaneFile = "" }, []string{"--name", "required"}},
		{"invalid port", func(c *Config) {
			c.DataplaneFile, c.Dataplane = "", strings.Replace(goodDoc, "port: 8080", "port: 0", 1)
		}, []string{"--dataplane", "networking.inbound[0].port"}},
		{"not yaml", func(c *Config) { c.DataplaneFile, c.Dataplane = "", "type: [" }, []string{"--dataplane"}},
		{"not a dataplane", func(c *Config) { c.DataplaneFile, c.Dataplane = "", "type: Mesh\nname: m\n" }, []string{"--dataplane", "type", "Mesh"}},
		{"unknown field", func(c *Config) {
			c.DataplaneFile, c.Dataplane = "", goodDoc+"bogus: 1\n"
		}, []string{"--dataplane", "bogus"}},
		{"name mismatch", func(c *Config) { c.Name = "other" }, []string{"--dataplane-file", `"web-1"`, "--name"}},
		{"no name", func(c *Config) {
			c.DataplaneFile, c.Dataplane = "", strings.Replace(goodDoc, "name: web-1\n", "", 1)
		}, []string{"--dataplane", "name"}},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, []string{"--log-level", "loud"}},
		{"bad proxy", func(c *Config) { c.Proxy = "nginx" }, []string{"--proxy", "nginx"}},
		{"envoy missing", func(c *Config) { c.Proxy, c.EnvoyBinary = "envoy", filepath.Join(dir, "no-envoy") }, []string{"--proxy envoy", "--envoy-binary"}},
		{"drain time", func(c *Config) { c.DrainTime = 0 }, []string{"--drain-time"}},
		{"state dir", func(c *Config) { c.StateDir = "" }, []string{"--state-dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			_, err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// An existing Dataplane by name, without a document.
	c := base()
	c.DataplaneFile, c.Name, c.Mesh = "", "web-1", "prod"
	if res, err := c.Validate(); err != nil || res.nodeID != "prod.web-1" || res.dataplane != nil {
		t.Fatalf("by name: %+v %v", res, err)
	}
}

func TestFillFromEnv(t *testing.T) {
	c := DefaultConfig()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	c.bindFlags(fs)
	if err := fs.Parse([]string{"--mesh", "fromflag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"KUMA_CP_ADDRESS": "grpc://a:1,grpc://b:2",
		"KUMA_MESH":       "fromenv",
		"KUMA_DRAIN_TIME": "5s",
		"KUMA_STATE_DIR":  "/tmp/x",
	}
	if err := flagenv.Fill(fs, nil, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if len(c.CPAddress) != 2 || c.Mesh != "fromflag" || c.DrainTime.String() != "5s" || c.StateDir != "/tmp/x" {
		t.Fatalf("config %+v", c)
	}
	env["KUMA_DRAIN_TIME"] = "soon"
	c = DefaultConfig()
	fs = pflag.NewFlagSet("run", pflag.ContinueOnError)
	c.bindFlags(fs)
	if err := flagenv.Fill(fs, nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "KUMA_DRAIN_TIME") {
		t.Fatalf("bad duration: %v", err)
	}
}

// FuzzDataplaneFlag: whatever --dataplane holds, Validate answers with a
// node id or an error naming the flag, and never panics.
func FuzzDataplaneFlag(f *testing.F) {
	f.Add(goodDoc)
	f.Add(`{"type":"Dataplane","mesh":"default","name":"x","networking":{"address":"1.2.3.4","gateway":{"tags":{"kuma.io/service":"g"}}}}`)
	f.Add("type: Dataplane\nnetworking: []\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, doc string) {
		c := DefaultConfig()
		c.CPAddress, c.Dataplane, c.Proxy = []string{"127.0.0.1:5678"}, doc, "builtin"
		res, err := c.Validate()
		if err != nil {
			if !strings.Contains(err.Error(), "--dataplane") && !strings.Contains(err.Error(), "--name") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		if res.nodeID == "" || !strings.Contains(res.nodeID, ".") {
			t.Fatalf("node id %q", res.nodeID)
		}
	})
}
