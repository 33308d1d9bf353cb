package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EnvKumactlBins lists Kuma's own kumactl binaries (comma or space
// separated) that TestIntegrationKumaKumactl runs against a follower.
const EnvKumactlBins = "KUMA_KUMACTL_BINS"

// compatResources is one document of every type Kuma's kumactl applies here.
const compatResources = `type: Mesh
name: compat
---
type: Dataplane
mesh: compat
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
---
type: MeshTimeout
mesh: compat
name: timeout-all
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
---
type: MeshTrafficPermission
mesh: compat
name: allow-all
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
---
type: TrafficRoute
mesh: compat
name: route-all
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: '*'
conf:
  destination:
    kuma.io/service: '*'
---
type: ZoneIngress
name: zi-1
networking:
  address: 10.0.0.2
  port: 10001
---
type: ZoneEgress
name: ze-1
networking:
  address: 10.0.0.3
  port: 10002
`

// TestIntegrationKumaKumactl runs every command of Kuma's own kumactl that
// works against a standalone Kuma through a follower of a 3-replica cluster.
func TestIntegrationKumaKumactl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bins := strings.FieldsFunc(os.Getenv(EnvKumactlBins), func(r rune) bool { return r == ',' || r == ' ' })
	if len(bins) == 0 {
		t.Skipf("set %s to paths of Kuma's kumactl binaries (built from Kuma's repository) to run this test", EnvKumactlBins)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, true)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := c.Followers(leader)[0]
	file := filepath.Join(t.TempDir(), "resources.yaml")
	if err := os.WriteFile(file, []byte(compatResources), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "kumactl.yaml")
			run := func(want []string, args ...string) string {
				t.Helper()
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				defer ccancel()
				cmd := exec.CommandContext(cctx, bin, append([]string{"--config-file", cfg}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("kumactl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				for _, w := range want {
					if !strings.Contains(string(out), w) {
						t.Errorf("kumactl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
					}
				}
				return string(out)
			}
			run(nil, "config", "control-planes", "add", "--name", "ha", "--address", follower.APIURL(), "--skip-verify", "--overwrite")
			run([]string{"Client:", "Server:"}, "version")
			run(nil, "apply", "-f", file)
			run([]string{"compat"}, "get", "meshes")
			for _, o := range []string{"yaml", "json"} {
				run([]string{"compat"}, "get", "meshes", "-o", o)
				run([]string{"compat"}, "get", "mesh", "compat", "-o", o)
				run([]string{"web-1", "10.0.0.1"}, "get", "dataplanes", "--mesh", "compat", "-o", o)
				run([]string{"web-1"}, "get", "dataplane", "web-1", "--mesh", "compat", "-o", o)
				run([]string{"timeout-all"}, "get", "meshtimeout", "timeout-all", "--mesh", "compat", "-o", o)
				run([]string{"allow-all"}, "get", "meshtrafficpermission", "allow-all", "--mesh", "compat", "-o", o)
				run([]string{"route-all"}, "get", "traffic-route", "route-all", "--mesh", "compat", "-o", o)
				run([]string{"zi-1"}, "get", "zone-ingress", "zi-1", "-o", o)
				run([]string{"ze-1"}, "get", "zoneegress", "ze-1", "-o", o)
			}
			run([]string{"web-1"}, "get", "dataplanes", "--mesh", "compat")
			run([]string{"timeout-all"}, "get", "meshtimeouts", "--mesh", "compat")
			run([]string{"allow-all"}, "get", "meshtrafficpermissions", "--mesh", "compat")
			run([]string{"route-all"}, "get", "traffic-routes", "--mesh", "compat")
			run([]string{"zi-1"}, "get", "zone-ingresses")
			run([]string{"ze-1"}, "get", "zoneegresses")
			run(nil, "get", "zones")
			run(nil, "get", "secrets", "--mesh", "compat")
			run(nil, "get", "global-secrets")
			run([]string{"web-1", "Offline"}, "inspect", "dataplanes", "--mesh", "compat")
			run([]string{"compat", "0/1"}, "inspect", "meshes")
			run([]string{"web"}, "inspect", "services", "--mesh", "compat")
			run([]string{"zi-1"}, "inspect", "zone-ingresses")
			run([]string{"ze-1"}, "inspect", "zoneegresses")
			run([]string{"MeshTimeout", "timeout-all", "MeshTrafficPermission"}, "inspect", "dataplane", "web-1", "--mesh", "compat", "--type", "policies")
			// Re-applying what a get returned (with Kuma's kri) is an update.
			run(nil, "apply", "-f", file)
			for _, del := range [][]string{
				{"dataplane", "web-1", "--mesh", "compat"}, {"meshtimeout", "timeout-all", "--mesh", "compat"},
				{"meshtrafficpermission", "allow-all", "--mesh", "compat"}, {"traffic-route", "route-all", "--mesh", "compat"},
				{"zone-ingress", "zi-1"}, {"zoneegress", "ze-1"}, {"mesh", "compat"},
			} {
				run([]string{"deleted"}, append([]string{"delete"}, del...)...)
			}
		})
	}
}
