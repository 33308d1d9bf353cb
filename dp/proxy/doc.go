// Package proxy is kuma-dp's built-in L4 proxy: it runs the TCP listeners and
// clusters of an Envoy v3 xDS config (tcp_proxy to STATIC or EDS clusters,
// weighted clusters, connect and idle timeouts, round robin, least request
// with its choice_count, random; ring hash and maglev, which get no hash key
// from a tcp_proxy, pick a random host as in Envoy) on real sockets, without
// Envoy. Every shape xds/envoy generates runs here (TestEveryGeneratedShape).
//
// It owns the listening sockets, the proxied connections and the goroutines
// that serve them: Apply swaps config in without touching established
// connections, removed listeners drain, Shutdown waits for every goroutine.
// Validate tells the agent which config it cannot run, so that it is NACKed.
//
// It speaks Envoy protos only. It must not import any package of the control
// plane (fsm, cluster, xds, ops), nor fetch config itself: the agent feeds it.
// Tests may use xds/envoy to generate configs.
package proxy
