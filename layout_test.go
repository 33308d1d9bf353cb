// The layout test enforces the import rules of the module's layout in
// one place: which package may depend on which, that the state machine stays
// pure, and that every package is used by some binary.
package kumaha_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kuma-ha/kuma-ha"

// pkg is one package of the import graph.
type pkg struct {
	Imports     []string // of the non-test files
	TestImports []string // of the package's _test.go files (internal and external)
	Ours        bool     // a package of this module
	Code        bool     // (ours) some non-test file declares something: not a doc.go-only package
}

// graph maps import paths to packages: the module's and everything they
// depend on (standard library and third party), for transitive checks.
type graph map[string]*pkg

// rule says what the packages of a subtree may depend on.
type rule struct {
	why    string
	from   string   // subtree (module-relative, "" for the whole module) the rule applies to
	except []string // subtrees of from it does not apply to
	tests  bool     // check the direct imports of the tests instead of the transitive deps of the code
	deny   []string // subtrees (module-relative if ours, else import paths) that may not be depended on
	allow  []string // exceptions to deny (import paths)
	only   []string // if set: the only subtrees of ours that may be depended on (from itself always may)
}

// rules of the layout (see the package docs of fsm, cluster, xds, dp and chaos).
var rules = []rule{
	{why: "the state machine imports nothing of ours but its own packages (fsm/resource)",
		from: "fsm", only: []string{"fsm"}},
	{why: "the state machine is pure: no network, no randomness, no process spawning (net/netip is a value type)",
		from: "fsm", deny: []string{"net", "math/rand", "os/exec"}, allow: []string{"net/netip"}},
	{why: "cluster is below the servers: it imports no xds or ops",
		from: "cluster", deny: []string{"xds", "ops"}},
	{why: "xds reaches the replica through its own interface (xds.Cluster), not the cluster package",
		from: "xds", deny: []string{"cluster"}},
	{why: "the data plane imports no server package",
		from: "dp", deny: []string{"fsm", "cluster", "xds", "ops", "kds"}},
	{why: "the built-in proxy speaks Envoy protos only",
		from: "dp/proxy", only: []string{}},
	{why: "the Envoy engine speaks xDS and Envoy's admin API; of ours only the built-in proxy's types",
		from: "dp/envoy", only: []string{"dp/proxy"}},
	{why: "the Envoy engine's tests use the built-in proxy, the ADS client and the generator",
		from: "dp/envoy", tests: true, only: []string{"dp/proxy", "dp/xdsclient", "xds/envoy", "fsm/resource"}},
	{why: "the chaos harness drives the binaries from outside: nothing of ours, tests included",
		from: "chaos", only: []string{"chaos"}},
	{why: "the chaos harness drives the binaries from outside: nothing of ours, tests included",
		from: "chaos", tests: true, only: []string{"chaos"}},
	{why: "production code imports no chaos (only its own binary does)",
		from: "", except: []string{"chaos", "cmd/kuma-chaos"}, deny: []string{"chaos"}},
}

// deadExceptions are packages that no binary uses, yet are kept, with why.
var deadExceptions = map[string]string{}

// abs turns a module-relative subtree into an import path.
func abs(rel string) string {
	if rel == "" {
		return module
	}
	return module + "/" + rel
}

// under: p is root or below it.
func under(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

func underAny(p string, roots []string) bool {
	return slices.ContainsFunc(roots, func(r string) bool { return under(p, r) })
}

// resolve makes the module-relative entries of a rule's list import paths;
// entries of the standard library or third party stay as they are.
func resolve(g graph, list []string) []string {
	out := make([]string, 0, len(list))
	for _, e := range list {
		if isOursRoot(g, e) {
			out = append(out, abs(e))
		} else {
			out = append(out, e)
		}
	}
	return out
}

// isOursRoot: some package of the module lies under the module-relative e.
func isOursRoot(g graph, e string) bool {
	for p, n := range g {
		if n.Ours && under(p, abs(e)) {
			return true
		}
	}
	return false
}

// deps returns the transitive non-test dependencies of p, each with the
// import chain that leads to it.
func deps(g graph, p string) map[string][]string {
	seen := map[string][]string{}
	queue := []string{p}
	chain := map[string][]string{p: {p}}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		n := g[cur]
		if n == nil {
			continue
		}
		for _, imp := range n.Imports {
			if _, ok := chain[imp]; ok {
				continue
			}
			chain[imp] = append(slices.Clone(chain[cur]), imp)
			seen[imp] = chain[imp]
			queue = append(queue, imp)
		}
	}
	return seen
}

// check returns every broken rule, one line each, sorted.
func check(g graph, live map[string]bool, rules []rule, dead map[string]string) []string {
	var out []string
	for _, r := range rules {
		from := abs(r.from)
		except := make([]string, len(r.except))
		for i, e := range r.except {
			except[i] = abs(e)
		}
		deny, allow := resolve(g, r.deny), r.allow
		var only []string
		if r.only != nil {
			only = append(resolve(g, r.only), from)
		}
		for p, n := range g {
			if !n.Ours || !under(p, from) || underAny(p, except) {
				continue
			}
			var found map[string][]string
			if r.tests {
				found = map[string][]string{}
				for _, imp := range n.TestImports {
					found[imp] = []string{p + " (tests)", imp}
				}
			} else {
				found = deps(g, p)
			}
			for d, path := range found {
				bad := underAny(d, deny) && !slices.Contains(allow, d)
				if only != nil && under(d, module) && !underAny(d, only) {
					bad = true
				}
				if bad {
					out = append(out, fmt.Sprintf("%s depends on %s (%s): %s", p, d, strings.Join(path, " -> "), r.why))
				}
			}
		}
	}
	for p, n := range g {
		if n.Ours && n.Code && !live[p] {
			if _, ok := dead[p]; !ok {
				out = append(out, fmt.Sprintf("%s is used by no binary (not in go list -deps ./cmd/...): delete it", p))
			}
		}
	}
	for p := range dead {
		if n := g[p]; n == nil || live[p] {
			out = append(out, fmt.Sprintf("dead-package exception %s is stale (the package is gone or used): remove it", p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// listed is the part of `go list -json` this test reads.
type listed struct {
	ImportPath   string
	Dir          string
	Module       *struct{ Path string }
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-e", "-json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	var ps []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list %v: %v", args, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// hasDecls: some file declares something beyond its package clause and imports.
func hasDecls(t *testing.T, dir string, files []string) bool {
	t.Helper()
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, f), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT {
				continue
			}
			return true
		}
	}
	return false
}

func moduleGraph(t *testing.T) (graph, map[string]bool) {
	g := graph{}
	for _, p := range goList(t, "-deps", "./...") {
		n := &pkg{Imports: p.Imports}
		if p.Module != nil && p.Module.Path == module {
			n.Ours = true
			n.TestImports = append(slices.Clone(p.TestImports), p.XTestImports...)
			n.Code = hasDecls(t, p.Dir, p.GoFiles)
		}
		g[p.ImportPath] = n
	}
	// -deps lists only the code's deps; the tests' imports come from a plain listing.
	for _, p := range goList(t, "./...") {
		if n := g[p.ImportPath]; n != nil {
			n.TestImports = append(slices.Clone(p.TestImports), p.XTestImports...)
		}
	}
	live := map[string]bool{}
	for _, p := range goList(t, "-deps", "./cmd/...") {
		live[p.ImportPath] = true
	}
	return g, live
}

func TestLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	g, live := moduleGraph(t)
	if len(g) == 0 || !g[abs("fsm")].Ours || !live[abs("cmd/kuma-cp")] {
		t.Fatalf("go list returned no usable graph (%d packages)", len(g))
	}
	for _, v := range check(g, live, rules, deadExceptions) {
		t.Error(v)
	}
}

// TestFSMSource: the state machine's code reads no wall clock (time comes in
// the command) and only fatal.go (the default OnFatal) touches the process.
func TestFSMSource(t *testing.T) {
	for _, p := range goList(t, "./fsm/...") {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				if imp.Path.Value == `"os"` && !(p.ImportPath == abs("fsm") && f == "fatal.go") {
					t.Errorf("%s imports os; only fsm/fatal.go (the default OnFatal) may", path)
				}
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Now" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" {
						t.Errorf("%s reads the wall clock (time.Now)", path)
					}
				}
				return true
			})
		}
	}
}

// TestCheckCatchesEveryRule: a synthetic graph that breaks each rule once,
// next to one that keeps them all.
func TestCheckCatchesEveryRule(t *testing.T) {
	ours := func(code bool, imports ...string) *pkg {
		for i, imp := range imports {
			if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !isStd(imp) {
				imports[i] = abs(imp)
			}
		}
		return &pkg{Ours: true, Code: code, Imports: imports}
	}
	std := func(imports ...string) *pkg { return &pkg{Imports: imports} }
	good := func() graph {
		return graph{
			abs("fsm/resource"):   ours(true, "net/netip"),
			abs("fsm"):            ours(true, "fsm/resource", "os"),
			abs("cluster"):        ours(true, "fsm", "net"),
			abs("xds"):            ours(true, "fsm", "xds/envoy"),
			abs("xds/envoy"):      ours(true, "fsm/resource"),
			abs("ops"):            ours(true, "fsm", "cluster"),
			abs("kds"):            ours(false),
			abs("dp"):             ours(false),
			abs("dp/proxy"):       ours(true, "net"),
			abs("dp/envoy"):       ours(true, "dp/proxy", "os/exec"),
			abs("dp/agent"):       ours(true, "dp/envoy", "dp/proxy"),
			abs("chaos"):          ours(true, "chaos/api"),
			abs("chaos/api"):      ours(true, "net/http"),
			abs("cmd/kuma-cp"):    ours(true, "cluster", "xds", "ops"),
			abs("cmd/kuma-dp"):    ours(true, "dp/agent"),
			abs("cmd/kuma-chaos"): ours(true, "chaos"),
			"net/netip":           std(),
			"os":                  std(),
			"net":                 std("os"),
			"net/http":            std("net"),
			"os/exec":             std("os"),
			"math/rand/v2":        std(),
		}
	}
	live := func(g graph) map[string]bool {
		l := map[string]bool{}
		for _, bin := range []string{"cmd/kuma-cp", "cmd/kuma-dp", "cmd/kuma-chaos"} {
			l[abs(bin)] = true
			for d := range deps(g, abs(bin)) {
				l[d] = true
			}
		}
		return l
	}
	if v := check(good(), live(good()), rules, nil); len(v) != 0 {
		t.Fatalf("a graph that keeps every rule broke some:\n%s", strings.Join(v, "\n"))
	}

	cases := []struct {
		name    string
		breakIt func(g graph)
		dead    map[string]string
		want    string // in one of the violations reported
	}{
		{"fsm imports ours", func(g graph) { g[abs("fsm")].Imports = append(g[abs("fsm")].Imports, abs("xds/envoy")) },
			nil, "fsm depends on " + abs("xds/envoy")},
		{"fsm/resource imports ours", func(g graph) {
			g[abs("fsm/resource")].Imports = append(g[abs("fsm/resource")].Imports, abs("dp/proxy"))
		},
			nil, "fsm/resource depends on " + abs("dp/proxy")},
		{"fsm reaches the network transitively", func(g graph) { g["os"].Imports = []string{"net"} },
			nil, "depends on net "},
		{"fsm uses randomness", func(g graph) { g[abs("fsm")].Imports = append(g[abs("fsm")].Imports, "math/rand/v2") },
			nil, "depends on math/rand/v2"},
		{"cluster imports xds", func(g graph) { g[abs("cluster")].Imports = append(g[abs("cluster")].Imports, abs("xds/envoy")) },
			nil, "cluster depends on " + abs("xds/envoy")},
		{"cluster imports ops", func(g graph) { g[abs("cluster")].Imports = append(g[abs("cluster")].Imports, abs("ops")) },
			nil, "cluster depends on " + abs("ops")},
		{"xds imports cluster", func(g graph) { g[abs("xds")].Imports = append(g[abs("xds")].Imports, abs("cluster")) },
			nil, "xds depends on " + abs("cluster")},
		{"dp imports a server package transitively", func(g graph) { g[abs("dp/proxy")].Imports = append(g[abs("dp/proxy")].Imports, abs("fsm/resource")) },
			nil, "dp/agent depends on " + abs("fsm/resource")},
		{"dp/envoy imports the ADS client", func(g graph) {
			g[abs("dp/xdsclient")] = ours(true)
			g[abs("dp/envoy")].Imports = append(g[abs("dp/envoy")].Imports, abs("dp/xdsclient"))
		}, nil, "dp/envoy depends on " + abs("dp/xdsclient")},
		{"dp/envoy tests import ops", func(g graph) { g[abs("dp/envoy")].TestImports = []string{abs("ops")} },
			nil, "dp/envoy (tests)"},
		{"chaos imports ours", func(g graph) { g[abs("chaos/api")].Imports = append(g[abs("chaos/api")].Imports, abs("fsm/resource")) },
			nil, "chaos/api depends on " + abs("fsm/resource")},
		{"chaos tests import ours", func(g graph) { g[abs("chaos")].TestImports = []string{abs("cmd/kuma-cp")} },
			nil, "chaos (tests)"},
		{"production code imports chaos", func(g graph) { g[abs("ops")].Imports = append(g[abs("ops")].Imports, abs("chaos/api")) },
			nil, "ops depends on " + abs("chaos/api")},
		{"dead package", func(g graph) { g[abs("xds/generator")] = ours(true, "fsm") },
			nil, abs("xds/generator") + " is used by no binary"},
		{"stale dead-package exception", func(g graph) {}, map[string]string{abs("xds/generator"): "gone"}, "is stale"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := good()
			c.breakIt(g)
			v := check(g, live(g), rules, c.dead)
			if len(v) == 0 {
				t.Fatalf("no violation reported")
			}
			if !slices.ContainsFunc(v, func(line string) bool { return strings.Contains(line, c.want) }) {
				t.Errorf("no violation names %q; got:\n%s", c.want, strings.Join(v, "\n"))
			}
		})
	}
	t.Run("exception keeps a dead package", func(t *testing.T) {
		g := good()
		g[abs("xds/generator")] = ours(true, "fsm")
		if v := check(g, live(g), rules, map[string]string{abs("xds/generator"): "kept"}); len(v) != 0 {
			t.Fatalf("violations despite the exception: %v", v)
		}
	})
}

// isStd: the test graph's standard library packages.
func isStd(p string) bool {
	return slices.Contains([]string{"net/netip", "os", "net", "net/http", "os/exec", "math/rand/v2"}, p)
}
