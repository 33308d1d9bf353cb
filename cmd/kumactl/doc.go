// Command kumactl is the command-line client of the control plane, compatible
// in commands, flags, output and configuration file with Kuma's kumactl.
//
// It owns the CLI only: it speaks to the control plane exclusively over the
// REST API (CONTRACT.md), failing over between the replicas' addresses of the
// active control plane (internal/client), and keeps its settings in
// $HOME/.kumactl/config (internal/config). It may use fsm/resource to decode
// and validate files locally before sending them, but must never import a
// server package (fsm state, cluster, ops): everything it knows about the
// cluster it learns through HTTP.
package main
