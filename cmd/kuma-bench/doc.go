// Command kuma-bench measures the control plane from outside, like an
// operator would: write throughput and latency of a 3-replica kuma-cp cluster
// next to a 3-member etcd cluster under the same load, unavailability when the
// leader is killed, the time and memory of snapshotting and restoring
// 100,000 Dataplanes, and what kuma-dp's built-in proxy costs traffic
// (throughput, added latency, RSS and CPU through two proxies vs direct).
// It writes every figure, with the command that produced it and the machine
// it ran on, into a markdown file (BENCHMARKS.md).
//
//	kuma-bench [--bin-dir bin] [--out BENCHMARKS.md] [--quick] writes|failover|snapshot|dataplane|all
//
// It starts everything on 127.0.0.1 only, bounds every load loop in count and
// time, and kills every child process on exit, also on SIGINT. It installs
// nothing: etcd (Debian package etcd-server) must be on PATH or given with --etcd.
package main
