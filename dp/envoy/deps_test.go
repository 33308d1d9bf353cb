package envoy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports: the engine speaks xDS and Envoy's admin API only. Of this
// module it imports the built-in proxy's types (proxy.Config, Status) and,
// in tests, the Envoy-like client and the generator; never a control plane
// server package.
func TestImports(t *testing.T) {
	const module = "github.com/kuma-ha/kuma-ha/"
	allowed := map[string]bool{module + "dp/proxy": true}
	allowedInTests := map[string]bool{module + "dp/proxy": true, module + "dp/xdsclient": true, module + "xds/envoy": true, module + "fsm/resource": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		ok := allowed
		if strings.HasSuffix(f, "_test.go") {
			ok = allowedInTests
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module) && !ok[path] {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
