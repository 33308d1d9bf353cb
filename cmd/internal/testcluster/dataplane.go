package testcluster

import "fmt"

// InboundDataplane is a Dataplane (YAML, mesh default, on 127.0.0.1) with
// one inbound: its proxy listens on port and forwards to the app on appPort.
func InboundDataplane(name, service string, port, appPort int) string {
	return fmt.Sprintf(`type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    servicePort: %d
    tags:
      kuma.io/service: %s
`, name, port, appPort, service)
}

// CallerDataplane is InboundDataplane plus an outbound: its proxy listens on
// 127.0.0.1:outPort and balances over every endpoint of toService.
func CallerDataplane(name, service string, port, appPort int, toService string, outPort int) string {
	return InboundDataplane(name, service, port, appPort) + fmt.Sprintf(`  outbound:
  - port: %d
    tags:
      kuma.io/service: %s
`, outPort, toService)
}
