package render

import (
	"fmt"
	"strings"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Ports and paths of a Broker's NATS servers.
const (
	natsClientPort  = int32(4222)
	natsClusterPort = int32(6222)
	natsMonitorPort = int32(8222)
	natsConfigDir   = "/etc/nats-config"
	natsConfigKey   = "nats.conf"
	natsPidDir      = "/var/run/nats"
	natsPidFile     = natsPidDir + "/nats.pid"
	natsDataDir     = "/data"
	natsJWTDir      = natsDataDir + "/jwt"
	// natsMaxControlLine bounds a protocol line. A CONNECT carries the user's
	// JWT, which comes close to the default 4 KiB for a workflow with the
	// longest names (natsauth's TestTheLongestWorkflowUserConnects logs it):
	// four times that leaves room for its permissions to grow.
	natsMaxControlLine = 16 << 10
	// Environment variables nats.conf reads, so that no secret is in the ConfigMap.
	envServerName    = "SERVER_NAME"
	envRoutePassword = "NATS_ROUTE_PASSWORD"
	// envRoutePrefix is followed by the server's ordinal: NATS_ROUTE_0 is the
	// URL of the route to server 0, with the route password.
	envRoutePrefix = "NATS_ROUTE_"
)

// NATSDataDir is where a Broker's server keeps JetStream and its resolver's
// account JWTs, and NATSServerNameEnv the variable nats.conf reads its name
// from: tests that run a server from NATSConfig put them elsewhere.
const (
	NATSDataDir       = natsDataDir
	NATSServerNameEnv = envServerName
)

// natsRouteURLs are the route URLs of a Broker's servers, with the route user
// and $(NATS_ROUTE_PASSWORD) for the kubelet to expand; none for one server.
func natsRouteURLs(b *v1alpha1.Broker) []string {
	n := b.DesiredReplicas()
	if n <= 1 {
		return nil
	}
	urls := make([]string, n)
	for i := range n {
		urls[i] = fmt.Sprintf("nats://%s:$(%s)@%s-%d.%s.%s.svc:%d", routeUser, envRoutePassword, NATSName(b.Name), i, NATSHeadlessName(b.Name), b.Namespace, natsClusterPort)
	}
	return urls
}

// NATSConfig renders nats.conf of a Broker: JetStream sized from the spec,
// operator mode with the Broker's operator, system account and workflows
// account (docs/architecture.md, Broker identities), and for 3 or 5 servers
// a cluster whose routes name every server through the headless Service and
// authenticate with the route password from the environment (the Secret).
func NATSConfig(b *v1alpha1.Broker, auth *natsauth.Broker) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	w("# nats.conf of Broker %s/%s, rendered by patchbay: edits are overwritten.", b.Namespace, b.Name)
	w("server_name: $%s", envServerName)
	w("listen: \"0.0.0.0:%d\"", natsClientPort)
	w("http: \"0.0.0.0:%d\"", natsMonitorPort)
	w("pid_file: %q", natsPidFile)
	w("# The size budget of a payload plus its headers: dead letters and run records refer to payloads, never copy them.")
	w("max_payload: %d", plan.MaxMessageLen)
	w("# Room for a workflow user's JWT, with its permissions, in the CONNECT line.")
	w("max_control_line: %d", natsMaxControlLine)
	w("# Lame-duck mode on shutdown: clients move to the other servers before this one stops.")
	w("lame_duck_duration: \"30s\"")
	w("lame_duck_grace_period: \"10s\"")
	w("")
	w("# Clients are users of the workflows account, each with its own JWT and")
	w("# permissions; the manager pushes the account's revocations over the system")
	w("# account, and the servers keep them in the resolver's directory.")
	w("operator: %q", auth.OperatorJWT)
	w("system_account: %q", auth.SystemAccount())
	w("resolver {")
	w("  type: full")
	w("  dir: %q", natsJWTDir)
	w("  allow_delete: false")
	w("  interval: \"2m\"")
	w("  timeout: \"5s\"")
	w("}")
	w("resolver_preload {")
	w("  %s: %q", auth.SystemAccount(), auth.SystemJWT)
	w("  %s: %q", auth.Account(), auth.AccountJWT)
	w("}")
	w("")
	w("jetstream {")
	w("  store_dir: %q", natsDataDir)
	size := b.StorageSize()
	if b.StorageKind() == v1alpha1.StorageMemory {
		w("  max_memory_store: %d", size.Value())
	} else {
		w("  max_file_store: %d", size.Value())
	}
	w("}")
	if n := b.DesiredReplicas(); n > 1 {
		w("")
		w("cluster {")
		w("  name: %q", b.Name)
		w("  listen: \"0.0.0.0:%d\"", natsClusterPort)
		w("  authorization {")
		w("    user: %q", routeUser)
		w("    password: $%s", envRoutePassword)
		w("  }")
		w("  # nats://%s:<password>@%s-<i>.%s.%s.svc:%d", routeUser, NATSName(b.Name), NATSHeadlessName(b.Name), b.Namespace, natsClusterPort)
		w("  routes: [")
		for i := range n {
			w("    $%s%d", envRoutePrefix, i)
		}
		w("  ]")
		w("}")
	}
	return s.String()
}
