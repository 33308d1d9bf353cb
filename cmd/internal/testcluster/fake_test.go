package testcluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// envFake makes the test binary act as a fake kuma-cp: it serves /ready,
// /cluster and / on --api-addr, answers its name on --gossip-addr, and names
// as leader the smallest name among itself and the peers that answer.
const envFake = "TESTCLUSTER_FAKE_KUMA_CP"

func runFakeKumaCP() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "fake kuma-cp: want `run`")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	name := fs.String("name", "", "")
	apiAddr := fs.String("api-addr", "", "")
	gossipAddr := fs.String("gossip-addr", "", "")
	join := fs.String("join", "", "")
	for _, f := range []string{"data-dir", "xds-addr", "kds-addr", "raft-addr", "advertise-host", "bootstrap-expect"} {
		fs.String(f, "", "")
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	gl, err := net.Listen("tcp", *gossipAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, *name)
			c.Close()
		}
	}()
	peers := func() []string {
		names := []string{*name}
		if *join == "" {
			return names
		}
		for _, a := range strings.Split(*join, ",") {
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err != nil {
				continue
			}
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
			b, _ := io.ReadAll(c)
			c.Close()
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		slices.Sort(names)
		return names
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"clusterId": "fake-cluster"})
	})
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ns := peers()
		st := ClusterStatus{Leader: ns[0]}
		for _, n := range ns {
			st.Replicas = append(st.Replicas, ReplicaStatus{Name: n, Healthy: true})
		}
		json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Addr: *apiAddr, Handler: mux}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Println("fake kuma-cp: SIGTERM, stopping")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Println("fake kuma-cp", *name, "listening on", *apiAddr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
