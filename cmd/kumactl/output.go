package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"
)

// Output formats of -o/--output.
const (
	formatTable = "table"
	formatYAML  = "yaml"
	formatJSON  = "json"
)

func validateOutput(v string) error {
	switch v {
	case formatTable, formatYAML, formatJSON:
		return nil
	}
	return fmt.Errorf("invalid value %q for --output: must be one of table|yaml|json", v)
}

// table is a header row, data rows and an optional footer, printed as Kuma
// prints its tables (columns separated by at least three spaces).
type table struct {
	headers []string
	rows    [][]string
	footer  string
}

func (t *table) print(out io.Writer) error {
	w := tabwriter.NewWriter(out, 1, 0, 3, ' ', 0)
	if _, err := fmt.Fprintln(w, strings.Join(t.headers, "\t")); err != nil {
		return err
	}
	for _, r := range t.rows {
		if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if t.footer != "" {
		if _, err := fmt.Fprintf(out, "\n%s\n", t.footer); err != nil {
			return err
		}
	}
	return nil
}

// printRaw prints a JSON answer of the API as indented JSON or as YAML.
func printRaw(out io.Writer, format string, raw []byte) error {
	switch format {
	case formatJSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("invalid JSON from the control plane: %w", err)
		}
		buf.WriteByte('\n')
		_, err := out.Write(buf.Bytes())
		return err
	case formatYAML:
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return fmt.Errorf("invalid JSON from the control plane: %w", err)
		}
		_, err = out.Write(y)
		return err
	}
	return fmt.Errorf("unsupported output format %q", format)
}

// age renders the time since t the way Kuma's tables do.
func age(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	seconds := int(d.Seconds())
	switch {
	case seconds < -1:
		return "never"
	case seconds < 0:
		return "0s"
	case seconds < 60:
		return fmt.Sprintf("%ds", seconds)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d < 365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours())/24)
	}
	return fmt.Sprintf("%dy", int(d.Hours()/24/365))
}

// paginationFooter tells how to fetch the next page, from the list's `next`
// URL, as Kuma does.
func paginationFooter(next *string) string {
	if next == nil || *next == "" {
		return ""
	}
	u, err := url.Parse(*next)
	if err != nil {
		return ""
	}
	off := u.Query().Get("offset")
	if off == "" {
		return ""
	}
	return fmt.Sprintf("Rerun command with --offset=%s argument to retrieve more resources", off)
}

// obj is a decoded JSON object with lenient accessors: a missing or
// mistyped field reads as the zero value, so output never panics on an
// unexpected answer.
type obj map[string]any

func (o obj) obj(key string) obj {
	m, _ := o[key].(map[string]any)
	return m
}

func (o obj) list(key string) []obj {
	l, _ := o[key].([]any)
	out := make([]obj, 0, len(l))
	for _, v := range l {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func (o obj) str(key string) string {
	switch v := o[key].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func (o obj) boolean(key string) bool {
	switch v := o[key].(type) {
	case bool:
		return v
	case string:
		b, _ := strconv.ParseBool(v)
		return b
	}
	return false
}

// num reads a number that protobuf JSON may have rendered as a string.
func (o obj) num(key string) int64 {
	switch v := o[key].(type) {
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func (o obj) time(key string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, o.str(key))
	if err != nil {
		return time.Time{}
	}
	return t
}

func (o obj) stringMap(key string) map[string]string {
	m, _ := o[key].(map[string]any)
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// tagSet renders tags as Kuma's TagSet does: keys sorted, the values of one
// key sorted and comma-joined, "key=v1,v2" pairs space-separated.
func tagSet(tags []map[string]string) string {
	values := map[string]map[string]bool{}
	for _, t := range tags {
		for k, v := range t {
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][v] = true
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		vs := make([]string, 0, len(values[k]))
		for v := range values[k] {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		parts = append(parts, k+"="+strings.Join(vs, ","))
	}
	return strings.Join(parts, " ")
}

// dataplaneTags collects the tags of a Dataplane's inbounds and gateway.
func dataplaneTags(networking obj) string {
	var tags []map[string]string
	for _, in := range networking.list("inbound") {
		tags = append(tags, in.stringMap("tags"))
	}
	if gw := networking.obj("gateway"); gw != nil {
		tags = append(tags, gw.stringMap("tags"))
	}
	return tagSet(tags)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pathSegment(s string) string { return url.PathEscape(s) }

// subscriptions sums up the xDS subscriptions of an insight (a Dataplane's,
// ZoneIngress's or ZoneEgress's), as Kuma's tables do.
type subscriptions struct {
	online        bool  // one subscription is connected and not disconnected
	last          obj   // the latest subscription; nil when there is none
	updates, errs int64 // config responses sent and rejected, over all subscriptions
}

func summarize(insight obj) subscriptions {
	var s subscriptions
	subs := insight.list("subscriptions")
	for _, sub := range subs {
		total := sub.obj("status").obj("total")
		s.updates += total.num("responsesSent")
		s.errs += total.num("responsesRejected")
		if !sub.time("connectTime").IsZero() && sub.time("disconnectTime").IsZero() {
			s.online = true
		}
	}
	if n := len(subs); n > 0 {
		s.last = subs[n-1]
	}
	return s
}

func (s subscriptions) status() string {
	if s.online {
		return "Online"
	}
	return "Offline"
}

// versions are the kuma-dp and Envoy versions of the latest subscription.
func (s subscriptions) versions() (kumaDP, envoy string) {
	v := s.last.obj("version")
	return dash(v.obj("kumaDp").str("version")), dash(v.obj("envoy").str("version"))
}

// overviewRow renders one DataplaneOverview (Kuma's shape: the Dataplane
// under "dataplane", its xDS subscriptions under "dataplaneInsight"). A
// proxy with no insight yet is Offline with "-" for what is unknown.
func overviewRow(o obj, now time.Time) []string {
	subs := summarize(o.obj("dataplaneInsight"))
	connected, updated, replica := "-", "-", "-"
	if subs.last != nil {
		connected = age(subs.last.time("connectTime"), now)
		updated = age(subs.last.obj("status").time("lastUpdateTime"), now)
		replica = dash(subs.last.str("controlPlaneInstanceId"))
	}
	if r := o.str("replica"); r != "" {
		replica = r
	}
	kumaDP, envoy := subs.versions()
	return []string{
		o.str("mesh"), o.str("name"), dataplaneTags(o.obj("dataplane").obj("networking")),
		subs.status(), connected, updated,
		strconv.FormatInt(subs.updates, 10), strconv.FormatInt(subs.errs, 10),
		replica, kumaDP, envoy,
	}
}
