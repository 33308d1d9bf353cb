package resource

import (
	"reflect"
	"strings"
	"testing"
)

type vcase struct {
	name   string
	doc    string   // JSON or YAML body
	fields []string // expected violation fields in order; nil = valid
	reason string   // optional substring of the first violation
}

func runValidation(t *testing.T, cases []vcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode([]byte(tc.doc), YAML)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			errs := Validate(r)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("fields = %q, want %q\n%v", got, tc.fields, errs)
			}
			if tc.reason != "" && !strings.Contains(errs[0].Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", errs[0].Reason, tc.reason)
			}
			if again := Validate(r); !reflect.DeepEqual(errs, again) {
				t.Fatal("validation is not deterministic")
			}
		})
	}
}

func TestValidateMeta(t *testing.T) {
	runValidation(t, []vcase{
		{"ok", `{"type":"Mesh","name":"default"}`, nil, ""},
		{"empty name", `{"type":"Mesh","name":""}`, []string{"name"}, "cannot be empty"},
		{"upper name", `{"type":"Mesh","name":"Default"}`, []string{"name"}, "invalid characters"},
		{"long name", `{"type":"Mesh","name":"` + strings.Repeat("a", 254) + `"}`, []string{"name"}, "253"},
		{"mesh on global", `{"type":"Zone","name":"z","mesh":"default"}`, []string{"mesh"}, "must be empty"},
		{"mesh missing", `{"type":"TrafficRoute","name":"r","sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"*"}}],"conf":{"destination":{"kuma.io/service":"*"}}}`, []string{"mesh"}, "cannot be empty"},
		{"bad mesh", `{"type":"MeshTrafficPermission","name":"r","mesh":"A B","spec":{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`, []string{"mesh"}, "invalid characters"},
	})
}

func dp(networking string) string {
	return `{"type":"Dataplane","mesh":"default","name":"dp-1","networking":` + networking + `}`
}

func TestValidateDataplane(t *testing.T) {
	svc := `"tags":{"kuma.io/service":"web"}`
	runValidation(t, []vcase{
		{"ok inbound", dp(`{"address":"192.168.0.1","inbound":[{"port":8080,` + svc + `}]}`), nil, ""},
		{"ok hostname ipv6", dp(`{"address":"dp.svc.local","inbound":[{"port":8080,"address":"::1",` + svc + `}],"outbound":[{"port":1,"address":"fd00::1","tags":{"kuma.io/service":"b"}}]}`), nil, ""},
		{"ok legacy outbound service", dp(`{"address":"10.0.0.1","inbound":[{"port":1,` + svc + `}],"outbound":[{"port":1,"service":"b"}]}`), nil, ""},
		{"ok gateway", dp(`{"address":"10.0.0.1","gateway":{"tags":{"kuma.io/service":"gw"}}}`), nil, ""},
		{"no inbound no gateway", dp(`{"address":"10.0.0.1"}`), []string{"networking"}, "at least one inbound"},
		{"both", dp(`{"address":"10.0.0.1","gateway":{"tags":{"kuma.io/service":"gw"}},"inbound":[{"port":1,` + svc + `}]}`), []string{"networking"}, "both with gateway"},
		{"no address", dp(`{"inbound":[{"port":1,` + svc + `}]}`), []string{"networking.address"}, "can't be empty"},
		{"bad address", dp(`{"address":"not an address!","inbound":[{"port":1,` + svc + `}]}`), []string{"networking.address"}, "valid IP address or domain name"},
		{"port range", dp(`{"address":"10.0.0.1","inbound":[{"port":0,"servicePort":70000,` + svc + `}]}`), []string{"networking.inbound[0].port", "networking.inbound[0].servicePort"}, "[1, 65535]"},
		{"missing service tag", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"tags":{"version":"v1"}}]}`), []string{`networking.inbound[0].tags["kuma.io/service"]`}, "tag has to exist"},
		{"bad protocol", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"tags":{"kuma.io/service":"a","kuma.io/protocol":"smtp"}}]}`), []string{`networking.inbound[0].tags["kuma.io/protocol"]`}, "Allowed values: grpc, http, http2, kafka, tcp, tls"},
		{"bad tag value", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"tags":{"kuma.io/service":"a b"}}]}`), []string{`networking.inbound[0].tags["kuma.io/service"]`}, "alphanumeric"},
		{"empty tag value", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"tags":{"kuma.io/service":"a","v":""}}]}`), []string{`networking.inbound[0].tags["v"]`}, "non-empty"},
		{"bad tag name", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"tags":{"kuma.io/service":"a","v!":"x"}}]}`), []string{`networking.inbound[0].tags["v!"]`}, "tag name"},
		{"service address", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"serviceAddress":"10.0.0.1",` + svc + `}]}`), []string{"networking.inbound[0].serviceAddress"}, "has to differ"},
		{"inbound address", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"address":"host",` + svc + `}]}`), []string{"networking.inbound[0].address"}, "valid IP address"},
		{"state", dp(`{"address":"10.0.0.1","inbound":[{"port":1,"state":"Up",` + svc + `}]}`), []string{"networking.inbound[0].state"}, "Ready"},
		{"outbound no service", dp(`{"address":"10.0.0.1","inbound":[{"port":1,` + svc + `}],"outbound":[{"port":1}]}`), []string{"networking.outbound[0].kuma.io/service"}, "cannot be empty"},
		{"outbound tags without service", dp(`{"address":"10.0.0.1","inbound":[{"port":1,` + svc + `}],"outbound":[{"port":1,"tags":{"a":"b"}}]}`), []string{`networking.outbound[0].tags["kuma.io/service"]`}, "tag has to exist"},
		{"outbound address", dp(`{"address":"10.0.0.1","inbound":[{"port":1,` + svc + `}],"outbound":[{"port":70000,"address":"localhost","service":"b"}]}`), []string{"networking.outbound[0].port", "networking.outbound[0].address"}, ""},
		{"gateway no service", dp(`{"address":"10.0.0.1","gateway":{"type":"OTHER"}}`), []string{"networking.gateway.type", `networking.gateway.tags["kuma.io/service"]`}, ""},
		{"yaml", "type: Dataplane\nmesh: default\nname: x\nnetworking:\n  address: 1.1.1.1\n  inbound:\n  - port: 99999\n    tags: {kuma.io/service: a}\n", []string{"networking.inbound[0].port"}, ""},
	})
}

func TestValidateMesh(t *testing.T) {
	runValidation(t, []vcase{
		{"ok", `{"type":"Mesh","name":"m","mtls":{"enabledBackend":"a","backends":[{"name":"a","type":"builtin"},{"name":"b","type":"provided"}]},"metrics":{"enabledBackend":"p","backends":[{"name":"p","type":"prometheus"}]},"skipCreatingInitialPolicies":["*"]}`, nil, ""},
		{"ok disabled mtls", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"a","type":"builtin"}]}}`, nil, ""},
		{"enabled missing", `{"type":"Mesh","name":"m","mtls":{"enabledBackend":"x","backends":[{"name":"a","type":"builtin"}]}}`, []string{"mtls.enabledBackend"}, "one of the backends"},
		{"duplicate backend", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"a","type":"builtin"},{"name":"a","type":"builtin"}]}}`, []string{"mtls.backends[1].name"}, "already used"},
		{"backend type", `{"type":"Mesh","name":"m","mtls":{"backends":[{"name":"","type":"magic"}]}}`, []string{"mtls.backends[0].type", "mtls.backends[0].name"}, "not supported"},
		{"tracing", `{"type":"Mesh","name":"m","tracing":{"defaultBackend":"z","backends":[{"name":"t","type":"zipkin","sampling":101}]}}`, []string{"tracing.backends[0].sampling", "tracing.defaultBackend"}, ""},
		{"logging", `{"type":"Mesh","name":"m","logging":{"backends":[{"name":"l","type":"syslog"}]}}`, []string{"logging.backends[0].type"}, ""},
		{"mesh services", `{"type":"Mesh","name":"m","meshServices":{"mode":"On"}}`, []string{"meshServices.mode"}, ""},
	})
}

func mtp(spec string) string {
	return `{"type":"MeshTrafficPermission","mesh":"default","name":"p","spec":` + spec + `}`
}

func TestValidateMeshTrafficPermission(t *testing.T) {
	runValidation(t, []vcase{
		{"ok", mtp(`{"targetRef":{"kind":"MeshService","name":"web"},"from":[{"targetRef":{"kind":"MeshSubset","tags":{"kuma.io/zone":"east"}},"default":{"action":"Deny"}}]}`), nil, ""},
		{"ok no top targetRef", mtp(`{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"AllowWithShadowDeny"}}]}`), nil, ""},
		{"no from", mtp(`{"targetRef":{"kind":"Mesh"}}`), []string{"spec.from"}, "at least one item"},
		{"bad action", mtp(`{"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Maybe"}}]}`), []string{"spec.from[0].default.action"}, "Allow"},
		{"missing action", mtp(`{"from":[{"targetRef":{"kind":"Mesh"},"default":{}}]}`), []string{"spec.from[0].default.action"}, "must be defined"},
		{"missing default", mtp(`{"from":[{"targetRef":{"kind":"Mesh"}}]}`), []string{"spec.from[0].default"}, "must be defined"},
		{"bad top kind", mtp(`{"targetRef":{"kind":"MeshGatewayX"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}`), []string{"spec.targetRef.kind"}, "not supported"},
		{"from kind", mtp(`{"from":[{"targetRef":{"kind":"Dataplane"},"default":{"action":"Allow"}}]}`), []string{"spec.from[0].targetRef.kind"}, ""},
		{"mesh with name", mtp(`{"targetRef":{"kind":"Mesh","name":"x"},"from":[{"targetRef":{"kind":""},"default":{"action":"Allow"}}]}`), []string{"spec.targetRef.name", "spec.from[0].targetRef.kind"}, ""},
		{"service without name", mtp(`{"targetRef":{"kind":"MeshService"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}`), []string{"spec.targetRef.name"}, "must be set"},
	})
}

func mt(spec string) string {
	return `{"type":"MeshTimeout","mesh":"default","name":"t","spec":` + spec + `}`
}

func TestValidateMeshTimeout(t *testing.T) {
	runValidation(t, []vcase{
		{"ok", mt(`{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"0s","connectionTimeout":"10s"}}],"to":[{"targetRef":{"kind":"MeshService","name":"b"},"default":{"http":{"requestTimeout":"1s","requestHeadersTimeout":"500ms"}}}]}`), nil, ""},
		{"neither", mt(`{"targetRef":{"kind":"Mesh"}}`), []string{"spec"}, "at least one of 'from', 'to'"},
		{"bad duration", mt(`{"to":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"ten"}}]}`), []string{"spec.to[0].default.idleTimeout"}, "valid duration"},
		{"negative", mt(`{"to":[{"targetRef":{"kind":"Mesh"},"default":{"http":{"streamIdleTimeout":"-1s"}}}]}`), []string{"spec.to[0].default.http.streamIdleTimeout"}, "negative"},
		{"zero connect", mt(`{"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"0s"}}]}`), []string{"spec.to[0].default.connectionTimeout"}, "greater than zero"},
		{"empty default", mt(`{"to":[{"targetRef":{"kind":"Mesh"},"default":{}}]}`), []string{"spec.to[0].default"}, "at least one timeout"},
		{"empty http", mt(`{"to":[{"targetRef":{"kind":"Mesh"},"default":{"http":{}}}]}`), []string{"spec.to[0].default.http"}, ""},
		{"from kind", mt(`{"from":[{"targetRef":{"kind":"MeshService","name":"x"},"default":{"idleTimeout":"1s"}}]}`), []string{"spec.from[0].targetRef.kind"}, ""},
		{"route from", mt(`{"targetRef":{"kind":"MeshHTTPRoute","name":"r"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"1s"}}]}`), []string{"spec.from"}, "must not be defined"},
		{"route conn", mt(`{"targetRef":{"kind":"MeshHTTPRoute","name":"r"},"to":[{"targetRef":{"kind":"Mesh"},"default":{"connectionTimeout":"1s"}}]}`), []string{"spec.to[0].default.connectionTimeout"}, "MeshHTTPRoute"},
	})
}

func tr(body string) string {
	return `{"type":"TrafficRoute","mesh":"default","name":"r",` + body + `}`
}

const trSel = `"sources":[{"match":{"kuma.io/service":"*"}}],"destinations":[{"match":{"kuma.io/service":"*"}}]`

func TestValidateTrafficRoute(t *testing.T) {
	runValidation(t, []vcase{
		{"ok", tr(trSel + `,"conf":{"destination":{"kuma.io/service":"*"}}`), nil, ""},
		{"ok split http", tr(trSel + `,"conf":{"split":[{"weight":0,"destination":{"kuma.io/service":"a"}},{"weight":1,"destination":{"kuma.io/service":"b"}}],"http":[{"match":{"headers":{"x-a":{"exact":""}}},"modify":{"requestHeaders":{"add":[{"name":"x","value":"y"}]}},"destination":{"kuma.io/service":"c"}}],"loadBalancer":{"ringHash":{"hashFunction":"XX_HASH"}}}`), nil, ""},
		{"empty", tr(`"conf":null`), []string{"sources", "destinations", "conf"}, ""},
		{"no service in source", tr(`"sources":[{"match":{"a":"b"}}],"destinations":[{"match":{"kuma.io/service":"*","v":"1"}}],"conf":{"destination":{"kuma.io/service":"*"}}`), []string{"sources[0].match", "destinations[0].match", `destinations[0].match["v"]`}, "mandatory tag"},
		{"no destination or split", tr(trSel + `,"conf":{}`), []string{"conf"}, "requires either"},
		{"both", tr(trSel + `,"conf":{"destination":{"kuma.io/service":"a"},"split":[{"weight":1,"destination":{"kuma.io/service":"b"}}]}`), []string{"conf"}, "same time"},
		{"weights", tr(trSel + `,"conf":{"split":[{"destination":{"kuma.io/service":"a"}},{"weight":0,"destination":{"v":"1"}}]}`), []string{"conf.split[0].weight", "conf.split[1].destination", "conf.split"}, "needs to be defined"},
		{"http match", tr(trSel + `,"conf":{"destination":{"kuma.io/service":"a"},"http":[{"match":{"path":{"prefix":""}},"modify":{"path":{"rewritePrefix":"/x"},"requestHeaders":{"add":[{"name":"host","value":"v"}]}},"destination":{"kuma.io/service":"a"}}]}`), []string{"conf.http[0].match.path.prefix", "conf.http[0].modify.path.rewritePrefix", "conf.http[0].modify.requestHeaders.add[0].name"}, ""},
		{"http no match", tr(trSel + `,"conf":{"destination":{"kuma.io/service":"a"},"http":[{"split":[{"weight":1,"destination":{"kuma.io/service":"b"}}]}]}`), []string{"conf.http[0].match"}, ""},
		{"lb", tr(trSel + `,"conf":{"destination":{"kuma.io/service":"a"},"loadBalancer":{"leastRequest":{"choiceCount":1}}}`), []string{"conf.loadBalancer.leastRequest.choiceCount"}, ">= 2"[:0]},
	})
}

func TestValidateZoneProxies(t *testing.T) {
	runValidation(t, []vcase{
		{"ingress ok", `{"type":"ZoneIngress","name":"zi","networking":{"address":"10.0.0.1","port":10001}}`, nil, ""},
		{"ingress bad", `{"type":"ZoneIngress","name":"zi","networking":{"port":0,"advertisedPort":10,"admin":{"port":0}},"availableServices":[{"tags":{"a":"b"}}]}`, []string{"networking.address", "networking.advertisedAddress", "networking.port", `availableServices[0].tags["kuma.io/service"]`}, ""},
		{"ingress advertised", `{"type":"ZoneIngress","name":"zi","networking":{"address":"10.0.0.1","port":1,"advertisedAddress":"1.1.1.1","admin":{"port":1}}}`, []string{"networking.advertisedPort", "networking.admin.port"}, ""},
		{"egress ok", `{"type":"ZoneEgress","name":"ze","zone":"z","networking":{"address":"egress.local","port":10002}}`, nil, ""},
		{"egress bad", `{"type":"ZoneEgress","name":"ze","networking":{"address":"%%","port":70000}}`, []string{"networking.address", "networking.port"}, ""},
		{"zone ok", `{"type":"Zone","name":"z"}`, nil, ""},
	})
}
