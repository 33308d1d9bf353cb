// Package testcluster starts real kuma-cp processes on 127.0.0.1 for
// integration tests and benchmarks: it builds the binaries, picks free ports,
// runs N replicas that join each other, and stops, kills, pauses and restarts
// them the way an operator (or a crash) would.
//
// It owns the child processes it starts and guarantees none outlives the
// cluster: Close, the cancellation of the context given to Start, and the
// death of the parent process (Linux parent-death signal) all kill them.
//
// It imports nothing of the control plane: it drives the built binaries from
// outside, through flags and the REST API, like any other client. It takes a
// Logf function instead of *testing.T so that commands can use it too.
//
// In a test:
//
//	root, _ := testcluster.RepoRoot(".")
//	binDir, err := testcluster.BuildBinaries(root) // or $KUMA_BIN_DIR
//	...
//	c, err := testcluster.Start(ctx, testcluster.Options{N: 3, BinDir: binDir, BaseDir: t.TempDir(), Logf: t.Logf, StartTogether: true})
//	defer c.Close()
//	defer func() { if t.Failed() { c.DumpLogs() } }()
//	if err != nil { t.Fatal(err) }
//	if err := c.WaitReady(ctx); err != nil { t.Fatal(err) }
//	leader, err := c.WaitLeader(ctx)
//	status, hdr, body, err := testcluster.Put(ctx, c.Followers(leader)[0].APIURL()+"/meshes/default/dataplanes/dp-1", doc)
//	leader.Kill(); leader.Restart(ctx); c.WaitHealthy(ctx)
package testcluster
