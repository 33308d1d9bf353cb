package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args []string, env map[string]string, fileYAML string) (Config, error) {
	t.Helper()
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	var configFile string
	fs.StringVar(&configFile, "config", "", "")
	cfg.bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fileYAML != "" {
		configFile = filepath.Join(t.TempDir(), "kuma-cp.yaml")
		if err := os.WriteFile(configFile, []byte(fileYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file, err := readConfigFile(configFile, fs)
	if err != nil {
		return cfg, err
	}
	if err := fillUnset(fs, file, func(k string) string { return env[k] }); err != nil {
		return cfg, err
	}
	if cfg.AdvertiseHost == "" {
		cfg.AdvertiseHost = "127.0.0.1"
	}
	return cfg, cfg.Validate()
}

func TestConfigPrecedence(t *testing.T) {
	file := "raft-addr: 127.0.0.1:1001\ngossip-addr: 127.0.0.1:2001\napi-addr: 127.0.0.1:3001\nbootstrap-expect: 3\njoin: [a:1, b:2]\n"
	env := map[string]string{"KUMA_RAFT_ADDR": "127.0.0.1:1002", "KUMA_GOSSIP_ADDR": "127.0.0.1:2002"}
	cfg, err := parse(t, []string{"--raft-addr", "127.0.0.1:1003"}, env, file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RaftAddr != "127.0.0.1:1003" {
		t.Errorf("flag must win: raft-addr = %s", cfg.RaftAddr)
	}
	if cfg.GossipAddr != "127.0.0.1:2002" {
		t.Errorf("env must win over file: gossip-addr = %s", cfg.GossipAddr)
	}
	if cfg.APIAddr != "127.0.0.1:3001" || cfg.BootstrapExpect != 3 || strings.Join(cfg.Join, ",") != "a:1,b:2" {
		t.Errorf("file values not applied: %+v", cfg)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parse(t, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != "standalone" || cfg.DataDir != "./kuma-cp-data" || cfg.APIAddr != ":5681" ||
		cfg.XDSAddr != ":5678" || cfg.KDSAddr != ":5685" || cfg.RaftAddr != ":5690" ||
		cfg.GossipAddr != ":5691" || cfg.BootstrapExpect != 1 {
		t.Errorf("defaults differ from the contract: %+v", cfg)
	}
	if cfg.HeartbeatTimeout <= 0 || cfg.HeartbeatTimeout > 2*time.Second {
		t.Errorf("heartbeat timeout %s not LAN-tuned", cfg.HeartbeatTimeout)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"bad mode", []string{"--mode", "galaxy"}, nil, "", "--mode"},
		{"zone without name", []string{"--mode", "zone"}, nil, "", "--zone"},
		{"bad raft addr", []string{"--raft-addr", "nope"}, nil, "", "--raft-addr"},
		{"bad port", []string{"--api-addr", ":99999"}, nil, "", "--api-addr"},
		{"bad join", []string{"--join", "hostonly"}, nil, "", "--join"},
		{"bootstrap zero", []string{"--bootstrap-expect", "0"}, nil, "", "--bootstrap-expect"},
		{"negative timeout", []string{"--raft-heartbeat-timeout", "-1s"}, nil, "", "--raft-heartbeat-timeout"},
		{"bad env", nil, map[string]string{"KUMA_BOOTSTRAP_EXPECT": "three"}, "", "KUMA_BOOTSTRAP_EXPECT"},
		{"unknown file key", nil, nil, "raft_address: x\n", "raft_address"},
		{"bad file value", nil, nil, "bootstrap-expect: {a: 1}\n", "bootstrap-expect"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "", "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.args, tc.env, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v does not name %s", err, tc.want)
			}
		})
	}
}
