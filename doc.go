// Package kumaha is the module's root: a replicated, Kuma-compatible
// service-mesh control plane. The binaries are under cmd/; layout_test.go
// here enforces the import rules between the top-level packages.
package kumaha
