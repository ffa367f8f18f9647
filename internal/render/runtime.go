package render

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Where the patchbay-runtime finds its inputs in every pod of a workflow.
const (
	planVolume         = "plan"
	planMountDir       = "/etc/patchbay/plan"
	natsVolume         = "nats-credentials"
	natsCredentialsDir = "/etc/patchbay/nats"
	// SidecarContainerName is the name of the runtime sidecar in a step's pod.
	SidecarContainerName = "patchbay-sidecar"
	// AppContainerName is the name of the user's container in a step's pod.
	AppContainerName = "app"
)

// Graceful shutdown of the patchbay-runtime. On SIGTERM it keeps serving for
// shutdownDelay, while the endpoints controller and kube-proxy stop sending it
// new requests, then drains for up to drainTimeout. The orchestrator's and
// the gateway's grace period covers both with room to spare, so that the
// kubelet does not kill a pod that is still finishing requests.
//
// A step's pod stops in another order: Kubernetes stops the app (a main
// container) first and the sidecar (a native sidecar) only once the app has
// exited. So the app's preStop hook drains the sidecar first (GET /drain on
// its admin port): /readyz fails, the consumers stop fetching, and the hook
// answers after shutdownDelay once the requests and messages in hand are done,
// within shutdownDelay + drainTimeout. Only then does the app get SIGTERM. The
// step's grace period covers the hook, then appStopBudget for the app to exit,
// then sidecarStopBudget for the drained sidecar to close (no second delay,
// nothing left in flight).
const (
	shutdownDelaySeconds          = 5
	drainTimeoutSeconds           = 30
	terminationGracePeriodSeconds = int64(shutdownDelaySeconds + drainTimeoutSeconds + 5)

	appStopBudgetSeconds              = 10
	sidecarStopBudgetSeconds          = 5
	stepTerminationGracePeriodSeconds = int64(shutdownDelaySeconds + drainTimeoutSeconds + appStopBudgetSeconds + sidecarStopBudgetSeconds)
)

var (
	shutdownDelay = fmt.Sprintf("%ds", shutdownDelaySeconds)
	drainTimeout  = fmt.Sprintf("%ds", drainTimeoutSeconds)
)

// runtimeArgs are the patchbay-runtime arguments of one role: the plan file,
// the shutdown delay and, for the async styles, where the broker is, where
// its credentials are mounted and how to store the workflow's streams.
func runtimeArgs(in *WorkflowInput, role string, extra ...string) []string {
	args := []string{role, "--plan=" + planMountDir + "/" + PlanKey}
	args = append(args, extra...)
	args = append(args, "--shutdown-delay="+shutdownDelay, "--drain-timeout="+drainTimeout)
	if in.usesBroker() {
		args = append(args,
			"--nats-url="+BrokerURL(in.Workflow.Namespace, in.Plan.Roles.BrokerName),
			"--nats-credentials="+natsCredentialsDir)
		if in.Streams != nil {
			args = append(args,
				fmt.Sprintf("--stream-replicas=%d", in.Streams.Replicas),
				"--stream-storage="+string(in.Streams.Storage))
		}
	}
	return args
}

func runtimeVolumeMounts(in *WorkflowInput) []corev1.VolumeMount {
	m := []corev1.VolumeMount{{Name: planVolume, MountPath: planMountDir, ReadOnly: true}}
	if in.usesBroker() {
		m = append(m, corev1.VolumeMount{Name: natsVolume, MountPath: natsCredentialsDir, ReadOnly: true})
	}
	return m
}

// runtimeVolumes are the plan and, for the async styles, the workflow's own
// NATS credentials: no other workflow's pods mount its Secret.
func runtimeVolumes(in *WorkflowInput) []corev1.Volume {
	v := []corev1.Volume{{
		Name: planVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: plan.ConfigMapName(in.Workflow.Name, in.Workflow.Spec.Style)},
		}},
	}}
	if in.usesBroker() {
		v = append(v, corev1.Volume{
			Name: natsVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: WorkflowCredentialsSecretName(in.Workflow.Name),
			}},
		})
	}
	return v
}

// Probes of the patchbay-runtime containers (sidecar, orchestrator, gateway).
//
// Liveness is /healthz: the runtime answers it from its start for as long as
// its serving loop runs, and never fails it because the broker is unreachable
// or the role is still connecting: restarting a role does not bring its
// broker sooner, it only turned a Broker's start into CrashLoopBackOff.
// Readiness is /readyz: false until the role is connected and set up on the
// broker, whenever the connection is down, and while draining.
//
// The startup probe is on /healthz too, not /readyz, and holds liveness back
// for up to runtimeStartupBudget. On /readyz it would restart every runtime
// container whose broker takes longer than the budget (the restart loop again,
// only slower), and since the sidecar is a native sidecar the kubelet would
// not start the app container before the broker is up. The wait for the
// broker is readiness' business: the pod takes no traffic until /readyz
// passes. The generous budget covers a runtime that is slow to open its
// admin port (a cold node, a throttled CPU) without ever letting liveness
// kill a role that is still starting.
const (
	runtimeStartupPeriodSeconds    = 2
	runtimeStartupFailureThreshold = 90 // 3 minutes
)

func httpProbe(path string, port int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(port), Scheme: corev1.URISchemeHTTP,
		}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		FailureThreshold: 3,
		SuccessThreshold: 1,
	}
}

// runtimeProbes sets the startup, liveness and readiness probes of a
// patchbay-runtime container whose admin endpoints are on port.
func runtimeProbes(c *corev1.Container, port int32) {
	startup := httpProbe("/healthz", port)
	startup.PeriodSeconds = runtimeStartupPeriodSeconds
	startup.TimeoutSeconds = 2
	startup.FailureThreshold = runtimeStartupFailureThreshold
	c.StartupProbe = startup
	// A liveness probe that times out after the kubelet's default second
	// killed healthy pods of a busy two-core node (measured on the local
	// cluster with the five samples starting at once): a pod must stay
	// unanswering for half a minute before it is restarted.
	live := httpProbe("/healthz", port)
	live.TimeoutSeconds = livenessTimeoutSeconds
	c.LivenessProbe = live
	ready := httpProbe("/readyz", port)
	ready.PeriodSeconds = 5
	ready.TimeoutSeconds = 3
	c.ReadinessProbe = ready
}

// livenessTimeoutSeconds bounds one liveness check of a runtime container.
const livenessTimeoutSeconds = 5

func tcpPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

// sidecarContainer is the patchbay-runtime sidecar of a step, the one place it
// is built. It runs as a native sidecar (an init container that keeps running),
// so it is up before the app starts and stops after it.
func sidecarContainer(in *WorkflowInput, step *plan.Step) corev1.Container {
	c := corev1.Container{
		Name:          SidecarContainerName,
		Image:         in.Settings.RuntimeImage,
		Command:       []string{SidecarCommand},
		Args:          runtimeArgs(in, "sidecar", "--step="+step.Name),
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Ports: []corev1.ContainerPort{
			tcpPort("http", plan.SidecarPort),
			tcpPort("admin", plan.SidecarAdminPort),
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("20m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
			Limits: corev1.ResourceList{corev1.ResourceMemory: sidecarMemoryLimit},
		},
		Env:             SidecarEnv(),
		SecurityContext: restrictedContainerSecurityContext(ptr.To(runtimeUser)),
		VolumeMounts:    runtimeVolumeMounts(in),
	}
	runtimeProbes(&c, plan.SidecarAdminPort)
	return c
}

// SidecarCommand is the sidecar container's command: patchbay-sidecar, the
// sidecar role of patchbay-runtime alone, which the runtime image holds beside
// patchbay-runtime (images/runtime/sidecar). Linking no more than the sidecar
// needs keeps the binary's pages out of the sidecar's memory
// (docs/architecture.md, The runtime binaries).
const SidecarCommand = "/patchbay-sidecar"

// sidecarMemoryLimit is the sidecar container's memory limit.
var sidecarMemoryLimit = resource.MustParse("128Mi")

// SidecarEnv is the sidecar container's environment: GOMEMLIMIT at 90% of
// the container's limit, so that the Go runtime collects harder as it nears
// the limit instead of being killed by the kernel, and GOGC at 50. The
// sidecar's live heap is about 1 MiB, so at the default GOGC the heap grows to
// the runtime's 4 MiB floor between collections; at 50 the floor is 2 MiB,
// which measured as 1.5 MiB less anonymous memory at 1000 rps; the extra
// collections (each well under a millisecond of CPU) did not move the hop
// latency in make bench.
func SidecarEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "GOMEMLIMIT", Value: strconv.FormatInt(sidecarMemoryLimit.Value()/10*9, 10)},
		{Name: "GOGC", Value: "50"},
	}
}

// drainPath is the sidecar's drain endpoint (serve.DrainPath).
const drainPath = "/drain"

// drainSidecarHook is the app container's preStop hook: it drains the
// sidecar before the app gets SIGTERM (see stepTerminationGracePeriodSeconds).
// An httpGet, which the kubelet runs against the pod's IP, because an app
// image need not have a shell; the sidecar's admin port is not one of the
// app container's ports, so the hook names it by number.
func drainSidecarHook() *corev1.Lifecycle {
	return &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: drainPath, Port: intstr.FromInt32(plan.SidecarAdminPort), Scheme: corev1.URISchemeHTTP,
	}}}
}

// componentContainer is the patchbay-runtime container of the orchestrator or the gateway.
func componentContainer(in *WorkflowInput, role string) corev1.Container {
	c := corev1.Container{
		Name:            role,
		Image:           in.Settings.RuntimeImage,
		Args:            runtimeArgs(in, role),
		Ports:           []corev1.ContainerPort{tcpPort("http", plan.ComponentPort)},
		Resources:       runtimeResources("50m", "64Mi", "256Mi"),
		SecurityContext: restrictedContainerSecurityContext(ptr.To(runtimeUser)),
		VolumeMounts:    runtimeVolumeMounts(in),
	}
	runtimeProbes(&c, plan.ComponentPort)
	return c
}

// runtimeResources requests cpu and memory for a patchbay-runtime container
// and limits its memory.
func runtimeResources(cpu, memory, memoryLimit string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(memory),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memoryLimit)},
	}
}
