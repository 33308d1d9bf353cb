package chaos

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/kuma-ha/kuma-ha/"

// TestImportsNothingOfOurs keeps the harness an outside observer: no
// package of the control plane may be imported (it drives the binaries).
func TestImportsNothingOfOurs(t *testing.T) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, module) && !strings.HasPrefix(p, module+"chaos") {
				t.Errorf("%s imports %s: chaos must drive the binaries from outside", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
