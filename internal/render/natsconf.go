package render

import (
	"fmt"
	"strings"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
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
	// Environment variables nats.conf reads, so that no secret is in the ConfigMap.
	envServerName     = "SERVER_NAME"
	envClientUser     = "NATS_CLIENT_USER"
	envClientPassword = "NATS_CLIENT_PASSWORD"
)

// NATSConfig renders nats.conf of a Broker: JetStream sized from the spec,
// client authentication from the environment (the Secret), and for 3 or 5
// servers a cluster whose routes name every server through the headless Service.
func NATSConfig(b *v1alpha1.Broker) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	w("# nats.conf of Broker %s/%s, rendered by patchbay: edits are overwritten.", b.Namespace, b.Name)
	w("server_name: $%s", envServerName)
	w("listen: \"0.0.0.0:%d\"", natsClientPort)
	w("http: \"0.0.0.0:%d\"", natsMonitorPort)
	w("pid_file: %q", natsPidFile)
	w("# The size budget of a payload plus its headers: dead letters and run records refer to payloads, never copy them.")
	w("max_payload: %d", plan.MaxMessageLen)
	w("# Lame-duck mode on shutdown: clients move to the other servers before this one stops.")
	w("lame_duck_duration: \"30s\"")
	w("lame_duck_grace_period: \"10s\"")
	w("")
	w("authorization {")
	w("  user: $%s", envClientUser)
	w("  password: $%s", envClientPassword)
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
		w("  routes: [")
		for i := range n {
			w("    \"nats://%s-%d.%s.%s.svc:%d\"", NATSName(b.Name), i, NATSHeadlessName(b.Name), b.Namespace, natsClusterPort)
		}
		w("  ]")
		w("}")
	}
	return s.String()
}
