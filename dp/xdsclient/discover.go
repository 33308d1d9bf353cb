package xdsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// DiscoverFromAPI returns a Config.Discover function that asks the control
// plane's REST API (GET {url}/cluster, trying each URL in turn until one
// answers) for its replicas and returns their xdsAddress, healthy replicas
// first.
func DiscoverFromAPI(apiURLs []string) func(ctx context.Context) ([]string, error) {
	urls := make([]string, 0, len(apiURLs))
	for _, u := range apiURLs {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			urls = append(urls, u)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	return func(ctx context.Context) ([]string, error) {
		if len(urls) == 0 {
			return nil, errors.New("discover: no API URL")
		}
		var errs []error
		for _, u := range urls {
			addrs, err := discoverOne(ctx, client, u)
			if err == nil {
				return addrs, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, fmt.Errorf("discover: %w", errors.Join(errs...))
	}
}

func discoverOne(ctx context.Context, client *http.Client, apiURL string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/cluster", nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s/cluster: %w", apiURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/cluster: %w", apiURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s/cluster: %w", apiURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/cluster: status %d", apiURL, resp.StatusCode)
	}
	var cs struct {
		Replicas []struct {
			XDSAddress string `json:"xdsAddress"`
			Healthy    bool   `json:"healthy"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("GET %s/cluster: decode: %w", apiURL, err)
	}
	var healthy, other []string
	for _, r := range cs.Replicas {
		addr, err := NormalizeAddress(r.XDSAddress)
		if err != nil {
			continue
		}
		if r.Healthy {
			healthy = append(healthy, addr)
		} else {
			other = append(other, addr)
		}
	}
	out := append(healthy, other...)
	if len(out) == 0 {
		return nil, fmt.Errorf("GET %s/cluster: no replica with an xdsAddress", apiURL)
	}
	return out, nil
}

// The control plane's replica discovery service on the xDS port (the
// server's xds.ReplicasService, repeated here: this package imports no
// server package).
const replicasMethod = "/kumaha.xds.v1.Replicas/List"

// DiscoverFromXDS returns a Config.Discover function that asks the
// replicas' own xDS port for the cluster's replicas (the unary
// kumaha.xds.v1.Replicas/List), trying each address servers returns in
// turn (typically the client's Status().Servers) until one answers, and
// returns their xDS addresses, healthy replicas first. A proxy given one
// replica's address thereby learns every other one.
func DiscoverFromXDS(servers func() []string) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		var errs []error
		for _, addr := range servers() {
			if ctx.Err() != nil {
				break
			}
			out, err := discoverXDS(ctx, addr)
			if err == nil {
				return out, nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return nil, errors.New("discover: no replica address to ask")
		}
		return nil, fmt.Errorf("discover: %w", errors.Join(errs...))
	}
}

func discoverXDS(ctx context.Context, addr string) ([]string, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("replicas from %s: %w", addr, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out structpb.Struct
	if err := cc.Invoke(ctx, replicasMethod, &emptypb.Empty{}, &out); err != nil {
		return nil, fmt.Errorf("replicas from %s: %w", addr, err)
	}
	var healthy, other []string
	for _, v := range out.GetFields()["replicas"].GetListValue().GetValues() {
		f := v.GetStructValue().GetFields()
		a, err := NormalizeAddress(f["xdsAddress"].GetStringValue())
		if err != nil {
			continue
		}
		if f["healthy"].GetBoolValue() {
			healthy = append(healthy, a)
		} else {
			other = append(other, a)
		}
	}
	all := append(healthy, other...)
	if len(all) == 0 {
		return nil, fmt.Errorf("replicas from %s: no replica with an xdsAddress", addr)
	}
	return all, nil
}
