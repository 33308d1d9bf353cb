package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The output file is a fixed header and one section per benchmark between
// markers, so that running one benchmark replaces only its own section.
var sectionOrder = []string{"writes", "failover", "snapshot", "dataplane"}

const (
	markBegin = "<!-- kuma-bench:begin %s -->"
	markEnd   = "<!-- kuma-bench:end %s -->"
)

const reportHeader = `# Benchmarks

Produced by ` + "`kuma-bench`" + ` (cmd/kuma-bench). Every section says the exact command that
produced it, when, and on which machine; rerun that command to reproduce it. A section
marked *quick* comes from a shortened smoke run and is not representative.

## Method

- **Everything on one machine**, on 127.0.0.1, with the data dirs in a temporary directory
  on the same disk. Both systems persist every write before answering (kuma-cp: Raft log in
  bolt with fsync; etcd: WAL with fsync). Only one system runs at a time.
- **writes**: a 3-replica kuma-cp cluster (built binary, ` + "`--bootstrap-expect 3`" + `) and a
  3-member etcd cluster get the same closed-loop load: C concurrent writers (C = 1, 16, 64),
  each sending its next write as soon as the previous one is answered, for a fixed time,
  spread round robin over all replicas/members (writes that reach a follower are forwarded to
  the leader by both systems). Every write creates or overwrites one of 10,000 keys. kuma-cp
  gets ` + "`PUT /meshes/default/dataplanes/bench-NNNNNNN`" + ` with a Dataplane JSON document; etcd
  gets ` + "`POST /v3/kv/put`" + ` (its JSON gateway) whose value is that same document, so the
  payload has the same size. HTTP/1.1 keep-alive, one shared transport. Latency is measured
  per successful write, from sending the request to reading the whole answer; percentiles are
  nearest-rank. Any answer other than 200/201, and any transport error, counts as an error.
- **failover**: a 3-replica kuma-cp cluster; writers PUT continuously through the two
  followers (1 s timeout per request). The leader is killed with SIGKILL. *Unavailability*
  is the time from the kill to the first successful write that was sent after the kill;
  *largest gap* is the longest time between two consecutive successful writes in the round.
  The killed replica is then restarted and the next round starts once it is ready and
  /cluster shows a leader and all three replicas healthy.
- **snapshot**: in a child process, the state machine (package fsm, the code kuma-cp runs)
  is filled with a Mesh and N Dataplanes through its Apply path, then Snapshot()+WriteTo(file)
  (buffered, fsync'ed) is timed; peak RSS (VmHWM, reset just before) includes the state
  itself. In a fresh child process, Restore(file) is timed and its peak RSS read.
`

// updateReport writes the section `name` (markdown without the markers)
// into the report at path, keeping the other sections of an existing report.
func updateReport(path, name, body string) error {
	sections := map[string]string{}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read report: %w", err)
	default:
		sections = parseSections(old)
	}
	sections[name] = strings.TrimSpace(body)
	foreign := foreignTail(old)
	var out bytes.Buffer
	out.WriteString(reportHeader)
	for _, s := range sectionOrder {
		out.WriteString("\n")
		fmt.Fprintf(&out, markBegin+"\n", s)
		if b, ok := sections[s]; ok {
			out.WriteString(b + "\n")
		} else {
			fmt.Fprintf(&out, "## %s\n\n_Not run yet: `kuma-bench %s`._\n", sectionTitle(s), s)
		}
		fmt.Fprintf(&out, markEnd+"\n", s)
	}
	if foreign != "" {
		out.WriteString("\n" + foreign + "\n")
	}
	tmp := path + ".tmp"
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// parseSections returns the bodies between matching markers of a report.
func parseSections(data []byte) map[string]string {
	out := map[string]string{}
	text := string(data)
	for _, s := range sectionOrder {
		begin := fmt.Sprintf(markBegin, s)
		end := fmt.Sprintf(markEnd, s)
		i := strings.Index(text, begin)
		if i < 0 {
			continue
		}
		rest := text[i+len(begin):]
		j := strings.Index(rest, end)
		if j < 0 {
			continue
		}
		out[s] = strings.TrimSpace(rest[:j])
	}
	return out
}

func sectionTitle(name string) string {
	switch name {
	case "writes":
		return "Write throughput and latency: kuma-cp vs etcd"
	case "failover":
		return "Leader failover"
	case "snapshot":
		return "Snapshot and restore"
	case "dataplane":
		return "Data plane proxy: throughput, added latency, memory (kuma-dp)"
	}
	return name
}

// table renders a markdown table.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	b.WriteString("| " + strings.Join(seps, " | ") + " |\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// foreignTail is what follows kuma-bench's last section in an existing
// report when it holds other tools' sections (kuma-xds-load writes its own
// after them); it is kept as it is.
func foreignTail(old []byte) string {
	text := string(old)
	i := strings.LastIndex(text, "<!-- kuma-bench:end ")
	if i < 0 {
		return ""
	}
	j := strings.Index(text[i:], "-->")
	if j < 0 {
		return ""
	}
	tail := strings.TrimSpace(text[i+j+len("-->"):])
	if !strings.Contains(tail, ":begin ") {
		return ""
	}
	return tail
}
