package fsm

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependencies keeps the state machine pure (see doc.go): no network, no
// randomness, no process spawning, no other package of ours, no wall clock.
func TestDependencies(t *testing.T) {
	const module = "github.com/kuma-ha/kuma-ha/"
	forbidden := map[string]bool{"net": true, "math/rand": true, "math/rand/v2": true, "os/exec": true}
	allowedOurs := map[string]bool{module + "fsm": true, module + "fsm/resource": true}

	out, err := exec.Command("go", "list", "-deps", "-json", "./", "./resource").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		// net/netip is a pure value type (address parsing for validation), no I/O.
		if forbidden[p.ImportPath] || (strings.HasPrefix(p.ImportPath, "net/") && p.ImportPath != "net/netip") {
			t.Errorf("fsm depends on %s", p.ImportPath)
		}
		if strings.HasPrefix(p.ImportPath, module) && !allowedOurs[p.ImportPath] {
			t.Errorf("fsm depends on %s", p.ImportPath)
		}
	}

	for _, dir := range []string{".", "resource"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			text := string(src)
			if strings.Contains(text, "time.Now(") {
				t.Errorf("%s reads the wall clock (time.Now)", file)
			}
			if strings.Contains(text, "\t\"os\"\n") && file != "fatal.go" {
				t.Errorf("%s imports os; only fatal.go (the default OnFatal) may", file)
			}
		}
	}
}
