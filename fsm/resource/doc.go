// Package resource owns Kuma's resource types (Mesh, Dataplane, policies,
// zone proxies, Zone), their JSON/YAML codecs, defaults and validation.
//
// It is used inside the deterministic state machine, so it must not import
// any other package of ours, nor net, math/rand, os, or read the wall clock.
// Validation and the stored codec are pure functions of their input; map
// iteration is always sorted so violations come out in a stable order.
package resource
