// Package chaos is a Jepsen-style harness for kuma-cp: it starts a cluster
// of the built binaries (local processes or Docker containers), runs client
// workloads against the REST API while nemeses kill, pause, restart and
// partition replicas, heals everything, and checks the recorded history:
// linearizability (porcupine), no lost acknowledged write, no stale read,
// identical state on every replica, and recovery to one healthy leader.
//
// It drives the binaries from the outside, like an operator, and imports
// nothing of the control plane. Subpackages: history (the record), check
// (the checkers), api (a REST client written from the contract), backend
// (processes, namespaces, containers), nemesis (fault schedule), workload
// (clients) and report (HTML).
package chaos
