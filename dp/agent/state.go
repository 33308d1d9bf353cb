package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

// stateFile is the last good config under the state dir; lockFile keeps two
// proxies from sharing one state dir.
const (
	stateFile = "config.json"
	lockFile  = "lock"
)

// stateFormat versions the file; a file of another format is ignored (with
// a warning), never misread.
const stateFormat = 1

type savedState struct {
	Format  int                 `json:"format"`
	Node    string              `json:"node"`
	SavedAt time.Time           `json:"savedAt"`
	Config  *xdsclient.Snapshot `json:"config"`
}

// StateDir is the directory where a proxy keeps its last good config,
// locked by one proxy at a time.
type StateDir struct {
	dir    string
	unlock func()
}

// OpenStateDir creates dir if needed, checks that it can be written and
// locks it. The error names the directory and what is wrong.
func OpenStateDir(dir string) (*StateDir, error) {
	if dir == "" {
		return nil, errors.New("--state-dir: required")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir %s: cannot create it: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("--state-dir %s: cannot write to it: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	unlock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("--state-dir %s: %w", dir, err)
	}
	return &StateDir{dir: dir, unlock: unlock}, nil
}

// Close releases the lock.
func (d *StateDir) Close() {
	if d != nil && d.unlock != nil {
		d.unlock()
		d.unlock = nil
	}
}

// Load returns the config saved for node, or nil if there is none. A file
// that cannot be read, is of another format or belongs to another node is
// an error (the caller logs it and starts without saved config).
func (d *StateDir) Load(node string) (*xdsclient.Snapshot, time.Time, error) {
	path := filepath.Join(d.dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read %s: %w", path, err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, time.Time{}, fmt.Errorf("read %s: %w", path, err)
	}
	if st.Format != stateFormat {
		return nil, time.Time{}, fmt.Errorf("read %s: format %d is not supported (want %d)", path, st.Format, stateFormat)
	}
	if st.Node != node {
		return nil, time.Time{}, fmt.Errorf("read %s: the config saved there is proxy %q's, not %q", path, st.Node, node)
	}
	if st.Config == nil {
		return nil, time.Time{}, fmt.Errorf("read %s: no config", path)
	}
	return st.Config, st.SavedAt, nil
}

// Save writes the config atomically: a temporary file is written and
// synced, renamed over the previous one, and the directory synced, so a
// crash leaves either the old config or the new one, never a torn file.
func (d *StateDir) Save(node string, snap *xdsclient.Snapshot, now time.Time) error {
	b, err := json.Marshal(savedState{Format: stateFormat, Node: node, SavedAt: now.UTC(), Config: snap})
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	tmp, err := os.CreateTemp(d.dir, ".config-*.tmp")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save config: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save config: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save config: close %s: %w", tmp.Name(), err)
	}
	path := filepath.Join(d.dir, stateFile)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if dir, err := os.Open(d.dir); err == nil {
		err = dir.Sync()
		dir.Close()
		if err != nil {
			return fmt.Errorf("save config: sync %s: %w", d.dir, err)
		}
	}
	return nil
}
