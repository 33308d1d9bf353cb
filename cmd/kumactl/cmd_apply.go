package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kuma-ha/kuma-ha/cmd/kumactl/internal/client"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// errInvalidResources is returned after every invalid document was reported.
var errInvalidResources = errors.New("failed to validate some resources")

// document is one resource read from the input, ready to PUT.
type document struct {
	index int // position among the non-empty documents, for messages
	json  []byte
	kind  *resourceType
	mesh  string
	name  string
}

func (d *document) path() string { return d.kind.itemPath(d.mesh, d.name) }

func newApplyCmd(rc *rootContext) *cobra.Command {
	var args struct {
		file   string
		vars   map[string]string
		dryRun bool
	}
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Create or modify Kuma resources",
		Long: `Create or modify Kuma resources.

The input holds one or more resources in Kuma's universal format: YAML
documents separated by "---", or JSON. Every document is checked before
anything is sent; then each is written with PUT, in order.`,
		Example: `Apply a resource from file
$ kumactl apply -f resource.yaml

Apply a resource from stdin
$ echo "
type: Mesh
name: demo
" | kumactl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			input, err := readApplyInput(cmd.InOrStdin(), args.file)
			if err != nil {
				return err
			}
			docs, errs := parseDocuments(render(input, args.vars))
			for _, e := range errs {
				cmd.PrintErrln(e)
			}
			if len(errs) > 0 {
				return errInvalidResources
			}
			if len(docs) == 0 {
				return errors.New("no resource(s) passed to apply")
			}
			out := cmd.OutOrStdout()
			if args.dryRun {
				for i, d := range docs {
					y, err := yaml.JSONToYAML(d.json)
					if err != nil {
						return err
					}
					if i > 0 {
						fmt.Fprintln(out, "---")
					}
					if _, err := out.Write(y); err != nil {
						return err
					}
				}
				return nil
			}
			c, err := rc.apiClient()
			if err != nil {
				return err
			}
			for _, d := range docs {
				resp, err := c.Do(cmd.Context(), http.MethodPut, d.path(), d.json, "application/json")
				if err != nil {
					return fmt.Errorf("resource[%d] %s %q: %w", d.index, d.kind.Type, d.name, err)
				}
				var outcome string
				switch resp.StatusCode {
				case http.StatusCreated:
					outcome = "Created"
				case http.StatusOK, http.StatusNoContent:
					outcome = "Updated"
				default:
					return fmt.Errorf("resource[%d] %s %q: %w", d.index, d.kind.Type, d.name, client.APIErrorFrom(resp))
				}
				mesh := d.mesh
				if d.kind.Global {
					mesh = ""
				}
				fmt.Fprintf(out, "Resource type=%q mesh=%q name=%q %s\n", d.kind.Type, mesh, d.name, outcome)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&args.file, "file", "f", "", "Path to file to apply, a directory of .yaml/.yml files, or `-` to read from stdin")
	_ = cmd.MarkFlagRequired("file")
	cmd.Flags().StringToStringVarP(&args.vars, "var", "v", map[string]string{}, "Variable to replace in configuration, key=value; {{ key }} in the input becomes value")
	cmd.Flags().BoolVar(&args.dryRun, "dry-run", false, "Resolve variable and prints result out without actual applying")
	return cmd
}

func readApplyInput(stdin io.Reader, file string) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	if file == "" {
		return nil, errors.New("invalid value for --file: must not be empty")
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("invalid value for --file: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("invalid value for --file: %w", err)
		}
		return b, nil
	}
	entries, err := os.ReadDir(file)
	if err != nil {
		return nil, fmt.Errorf("invalid value for --file: %w", err)
	}
	var names []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var all bytes.Buffer
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(file, n))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", n, err)
		}
		all.WriteString("\n---\n")
		all.Write(b)
	}
	return all.Bytes(), nil
}

var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}`)

// render replaces {{ key }} with the value of --var key=value. Placeholders
// without a value are left as they are.
func render(input []byte, vars map[string]string) []byte {
	if len(vars) == 0 {
		return input
	}
	return placeholder.ReplaceAllFunc(input, func(m []byte) []byte {
		key := string(placeholder.FindSubmatch(m)[1])
		if v, ok := vars[key]; ok {
			return []byte(v)
		}
		return m
	})
}

// splitYAML cuts a stream at "---" separator lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimRight(line, " \t\r")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- #") {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	docs = append(docs, cur.Bytes())
	return docs
}

// parseDocuments turns the input into documents, checking each. It returns
// every problem found, one message per invalid field, each naming the
// document ("resource[1]: ...").
func parseDocuments(data []byte) ([]*document, []string) {
	var docs []*document
	var errs []string
	index := 0
	for _, raw := range splitYAML(data) {
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			errs = append(errs, fmt.Sprintf("resource[%d]: failed to parse resource: %v", index, err))
			index++
			continue
		}
		js = bytes.TrimSpace(js)
		if string(js) == "null" {
			continue // only comments
		}
		var items []json.RawMessage
		if len(js) > 0 && js[0] == '[' {
			if err := json.Unmarshal(js, &items); err != nil {
				errs = append(errs, fmt.Sprintf("resource[%d]: failed to parse resource: %v", index, err))
				index++
				continue
			}
		} else {
			items = []json.RawMessage{js}
		}
		for _, item := range items {
			d, problems := checkDocument(item, index)
			for _, p := range problems {
				errs = append(errs, fmt.Sprintf("resource[%d]: %s", index, p))
			}
			if len(problems) == 0 {
				docs = append(docs, d)
			}
			index++
		}
	}
	return docs, errs
}

// checkDocument reads the meta of one resource and validates it locally.
func checkDocument(js []byte, index int) (*document, []string) {
	var meta map[string]any
	if err := json.Unmarshal(js, &meta); err != nil || meta == nil {
		return nil, []string{"failed to parse resource: a resource must be an object"}
	}
	var problems []string
	str := func(field string) string {
		v, present := meta[field]
		if !present {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			problems = append(problems, field+": must be a string")
		}
		return s
	}
	kind, mesh, name := str("type"), str("mesh"), str("name")
	if len(problems) > 0 {
		return nil, problems
	}
	if kind == "" {
		return nil, []string{"type: must not be empty"}
	}
	rt, ok := typeByKind(kind)
	if !ok {
		return nil, []string{fmt.Sprintf("type: unknown resource type %q", kind)}
	}
	if name == "" {
		problems = append(problems, "name: must not be empty")
	}
	if rt.Global {
		if mesh != "" && rt.Type != "Mesh" {
			problems = append(problems, fmt.Sprintf("mesh: must be empty: %s is not in a mesh", rt.Type))
		}
	} else if mesh == "" {
		// Kuma requires the mesh in the file; filling it from --mesh would
		// apply a file to a different mesh than it says.
		problems = append(problems, "mesh: must not be empty")
	}
	if len(problems) > 0 {
		return nil, problems
	}
	problems = append(problems, validateLocally(js)...)
	if len(problems) > 0 {
		return nil, problems
	}
	return &document{index: index, json: js, kind: rt, mesh: mesh, name: name}, nil
}

// validateLocally decodes and validates with the resource package so a bad
// file fails before anything is sent, naming the field. It is skipped when
// the resource package knows no types (then the server validates).
func validateLocally(js []byte) []string {
	if len(resource.Descriptors()) == 0 {
		return nil
	}
	r, err := resource.Decode(js, resource.JSON)
	if err != nil {
		return []string{"failed to parse resource: " + err.Error()}
	}
	if r == nil {
		return nil
	}
	resource.Default(r)
	verrs := resource.Validate(r)
	out := make([]string, 0, len(verrs))
	for _, v := range verrs {
		if v.Field == "" {
			out = append(out, v.Reason)
		} else {
			out = append(out, v.Field+": "+v.Reason)
		}
	}
	return out
}
