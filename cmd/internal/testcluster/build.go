package testcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// EnvBinDir names the environment variable that points at prebuilt binaries
// (a directory holding kuma-cp); when set, BuildBinaries builds nothing.
const EnvBinDir = "KUMA_BIN_DIR"

// ModulePath is the Go module of the repository the binaries are built from.
const ModulePath = "github.com/kuma-ha/kuma-ha"

var build struct {
	once   sync.Once
	binDir string
	err    error
}

// BuildBinaries returns a directory holding kuma-cp (and kumactl and kuma-dp
// when their packages exist). With $KUMA_BIN_DIR set it checks and returns
// that directory; otherwise it builds the binaries from repoRoot with
// CGO_ENABLED=0 into a new temporary directory, once per process: later calls
// return the first call's result. RemoveBuiltBinaries deletes that directory.
func BuildBinaries(repoRoot string) (string, error) {
	build.once.Do(func() {
		build.binDir, build.err = buildBinaries(repoRoot)
	})
	return build.binDir, build.err
}

// RemoveBuiltBinaries deletes the directory BuildBinaries built into, if it
// built anything (a TestMain calls it after m.Run). Prebuilt binaries are kept.
func RemoveBuiltBinaries() error {
	if os.Getenv(EnvBinDir) != "" || build.binDir == "" || build.err != nil {
		return nil
	}
	return os.RemoveAll(build.binDir)
}

func buildBinaries(repoRoot string) (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinDir, err)
		}
		if err := checkExecutable(filepath.Join(abs, "kuma-cp")); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinDir, dir, err)
		}
		return abs, nil
	}
	if repoRoot == "" {
		return "", errors.New("build binaries: repoRoot is empty")
	}
	var pkgs []string
	for _, name := range []string{"kuma-cp", "kumactl", "kuma-dp"} {
		if hasGoMain(filepath.Join(repoRoot, "cmd", name)) {
			pkgs = append(pkgs, "./cmd/"+name)
		}
	}
	if len(pkgs) == 0 || pkgs[0] != "./cmd/kuma-cp" {
		return "", fmt.Errorf("build binaries: no Go package in %s", filepath.Join(repoRoot, "cmd", "kuma-cp"))
	}
	binDir, err := os.MkdirTemp("", "kuma-ha-bin-")
	if err != nil {
		return "", fmt.Errorf("build binaries: %w", err)
	}
	args := append([]string{"build", "-o", binDir + string(filepath.Separator)}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		os.RemoveAll(binDir)
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return binDir, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// hasGoMain reports whether dir holds at least one non-test Go file.
func hasGoMain(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}

// RepoRoot walks up from dir to the directory whose go.mod declares
// ModulePath. Tests call RepoRoot(".").
func RepoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == ModulePath {
					return d, nil
				}
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s above %s", ModulePath, abs)
		}
	}
}
