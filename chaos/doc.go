// Package chaos drives built binaries from the outside, like an operator:
// fault injection, workloads and history checkers. It imports nothing of ours.
//
// Arrives with the chaos issue; empty in this release.
package chaos
