// Package kds synchronises resources between a global control plane and its
// zones. It runs under the cluster's leadership hook so that exactly one
// replica of a zone holds the link.
//
// Arrives with the multi-zone issue; empty in this release.
package kds
