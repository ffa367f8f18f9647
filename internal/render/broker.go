package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
)

// natsUser is the non-root user the NATS server runs as; the image's default is root.
const natsUser = int64(1000)

// routeUser is the user the routes between a Broker's servers authenticate as.
const routeUser = "route"

// BrokerInput is everything a Broker's children are rendered from.
type BrokerInput struct {
	Broker   *v1alpha1.Broker
	Settings Settings
	// Auth is the Broker's identity material: the controller generates it
	// once and keeps it in the auth Secret it renders from it.
	Auth *natsauth.Broker
}

func (in *BrokerInput) owner() owner { return brokerOwner(in.Broker) }

// BrokerObjects renders every child of a Broker, in the order the controller
// applies them: what the StatefulSet's pods need comes first.
func BrokerObjects(in *BrokerInput) []client.Object {
	return []client.Object{
		NATSAuthSecret(in),
		NATSConfigMap(in),
		NATSHeadlessService(in),
		NATSClientService(in),
		NATSStatefulSet(in),
		NATSDisruptionBudget(in),
		NATSNetworkPolicy(in),
	}
}

// NATSImage is the image a Broker runs: its own, or the operator's default.
func NATSImage(in *BrokerInput) string {
	if in.Broker.Spec.Image != "" {
		return in.Broker.Spec.Image
	}
	return in.Settings.NATSImage
}

// NATSAuthSecret renders <broker>-nats-auth: the keys of the Broker's
// operator and accounts, their JWTs and the route password. Only the NATS
// servers (the route password) and the manager read it; workflow pods mount
// their own credentials Secret (WorkflowCredentialsSecret).
func NATSAuthSecret(in *BrokerInput) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		Type:     corev1.SecretTypeOpaque,
		Data:     in.Auth.Data(),
	}
	stamp(s, in.owner(), NATSAuthSecretName(in.Broker.Name), ComponentNATS, "")
	return s
}

// NATSConfigMap renders <broker>-nats-config with nats.conf.
func NATSConfigMap(in *BrokerInput) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		Data:     map[string]string{natsConfigKey: NATSConfig(in.Broker, in.Auth)},
	}
	stamp(cm, in.owner(), NATSConfigName(in.Broker.Name), ComponentNATS, "")
	return cm
}

// NATSHeadlessService renders <broker>-nats-headless: the stable DNS names the
// servers find each other by, published before they are ready so that a
// cluster can form.
func NATSHeadlessService(in *BrokerInput) *corev1.Service {
	o := in.owner()
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 selectorLabels(o, ComponentNATS, ""),
			Ports: []corev1.ServicePort{
				servicePort("client", natsClientPort, natsClientPort),
				servicePort("cluster", natsClusterPort, natsClusterPort),
				servicePort("monitor", natsMonitorPort, natsMonitorPort),
			},
		},
	}
	stamp(svc, o, NATSHeadlessName(in.Broker.Name), ComponentNATS, "")
	return svc
}

// NATSClientService renders <broker>-nats, the address clients connect to.
func NATSClientService(in *BrokerInput) *corev1.Service {
	o := in.owner()
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Spec: corev1.ServiceSpec{
			Selector: selectorLabels(o, ComponentNATS, ""),
			Ports:    []corev1.ServicePort{servicePort("client", natsClientPort, natsClientPort)},
		},
	}
	stamp(svc, o, NATSName(in.Broker.Name), ComponentNATS, "")
	return svc
}

// NATSStatefulSet renders <broker>-nats. Its pods start in parallel (a
// JetStream cluster needs its quorum to become healthy), enter lame-duck mode
// before stopping, and carry the hash of their configuration and credentials,
// which NATS reads only at start.
func NATSStatefulSet(in *BrokerInput) *appsv1.StatefulSet {
	b := in.Broker
	o := in.owner()
	secretEnv := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: NATSAuthSecretName(b.Name)}, Key: key,
		}}}
	}
	probe := func(path string) *corev1.Probe {
		p := &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(natsMonitorPort), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 3, SuccessThreshold: 1,
		}
		return p
	}
	startup := probe("/healthz")
	startup.FailureThreshold = 90 // JetStream may take minutes to recover its streams
	nats := corev1.Container{
		Name:    "nats",
		Image:   NATSImage(in),
		Command: []string{"nats-server", "--config", natsConfigDir + "/" + natsConfigKey},
		Env: []corev1.EnvVar{
			{Name: envServerName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			secretEnv(envRoutePassword, natsauth.KeyRoutePassword),
		},
		Ports: []corev1.ContainerPort{
			tcpPort("client", natsClientPort),
			tcpPort("cluster", natsClusterPort),
			tcpPort("monitor", natsMonitorPort),
		},
		StartupProbe:   startup,
		LivenessProbe:  probe("/healthz?js-enabled-only=true"),
		ReadinessProbe: probe("/healthz?js-enabled-only=true"),
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"nats-server", "-sl=ldm=" + natsPidFile},
		}}},
		Resources:       natsResources(b),
		SecurityContext: restrictedContainerSecurityContext(ptr.To(natsUser)),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: natsConfigDir, ReadOnly: true},
			{Name: "pid", MountPath: natsPidDir},
			{Name: "data", MountPath: natsDataDir},
		},
	}
	// The route URLs carry the route password: the kubelet expands
	// $(NATS_ROUTE_PASSWORD) in them, and nats.conf names them as variables.
	for i, u := range natsRouteURLs(b) {
		nats.Env = append(nats.Env, corev1.EnvVar{Name: fmt.Sprintf("%s%d", envRoutePrefix, i), Value: u})
	}
	if limit, ok := nats.Resources.Limits[corev1.ResourceMemory]; ok {
		// The Go runtime collects harder as it nears the limit, before the kernel kills it.
		nats.Env = append(nats.Env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: strconv.FormatInt(limit.Value()/10*9, 10)})
	}
	pod := podSpecBase()
	pod.SecurityContext.FSGroup = ptr.To(natsUser)
	// Lame-duck mode lasts 30s plus a 10s grace period before it.
	pod.TerminationGracePeriodSeconds = ptr.To(int64(60))
	pod.Containers = []corev1.Container{nats}
	pod.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: NATSConfigName(b.Name)},
		}}},
		{Name: "pid", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	size := b.StorageSize()
	var claims []corev1.PersistentVolumeClaim
	if b.StorageKind() == v1alpha1.StorageMemory {
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	} else {
		claim := corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: objectLabels(o, ComponentNATS, "")},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				// Set although it is the default: claim templates are applied as a
				// whole, so a defaulted field would read as drift.
				VolumeMode: ptr.To(corev1.PersistentVolumeFilesystem),
				Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			},
		}
		if b.Spec.JetStream != nil {
			claim.Spec.StorageClassName = b.Spec.JetStream.StorageClassName
		}
		claims = append(claims, claim)
	}
	sts := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(b.DesiredReplicas()),
			ServiceName:         NATSHeadlessName(b.Name),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: selectorLabels(o, ComponentNATS, "")},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      objectLabels(o, ComponentNATS, ""),
					Annotations: map[string]string{AnnotationConfigHash: natsConfigHash(in)},
				},
				Spec: pod,
			},
			VolumeClaimTemplates: claims,
		},
	}
	stamp(sts, o, NATSName(b.Name), ComponentNATS, "")
	return sts
}

// Memory of a NATS server beyond what JetStream stores in memory: connections,
// routes, message buffers and the Go runtime.
var (
	natsMemoryHeadroom    = resource.MustParse("256Mi")
	natsFileStorageMemory = resource.MustParse("256Mi")
	natsCPURequest        = resource.MustParse("100m")
)

// natsResources size a NATS server. With memory storage JetStream keeps every
// stream in the process, up to spec.jetstream.size (max_memory_store), so the
// container asks for and is limited to that plus a headroom of a quarter of it,
// at least 256Mi: requests equal to the limit keep it off the eviction list.
// With file storage the streams are on the volume and the server needs little
// memory; it gets requests and no limit, so that its page cache may grow.
func natsResources(b *v1alpha1.Broker) corev1.ResourceRequirements {
	if b.StorageKind() != v1alpha1.StorageMemory {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    natsCPURequest,
			corev1.ResourceMemory: natsFileStorageMemory,
		}}
	}
	size := b.StorageSize()
	headroom := resource.NewQuantity(size.Value()/4, resource.BinarySI)
	if headroom.Cmp(natsMemoryHeadroom) < 0 {
		headroom = ptr.To(natsMemoryHeadroom.DeepCopy())
	}
	memory := resource.NewQuantity(size.Value()+headroom.Value(), resource.BinarySI)
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: natsCPURequest, corev1.ResourceMemory: *memory},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: *memory},
	}
}

// natsConfigHash covers everything a NATS server reads only when it starts.
func natsConfigHash(in *BrokerInput) string {
	h := sha256.New()
	for _, s := range []string{NATSConfig(in.Broker, in.Auth), in.Auth.RoutePassword} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// NATSDisruptionBudget renders <broker>-nats: a drain takes one server at a
// time, so a 3- or 5-server cluster keeps its JetStream quorum.
func NATSDisruptionBudget(in *BrokerInput) client.Object {
	return disruptionBudget(in.owner(), NATSName(in.Broker.Name), ComponentNATS, "")
}

// NATSNetworkPolicy renders <broker>-nats: clients only from the pods of
// workflows that use this Broker and from the manager, routes only from its
// own servers, and the monitoring port only from its own servers and the
// manager (the kubelet's probes come from the node, which policies do not
// restrict).
func NATSNetworkPolicy(in *BrokerInput) *networkingv1.NetworkPolicy {
	o := in.owner()
	self := selectorLabels(o, ComponentNATS, "")
	np := &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: self},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{
					Ports: tcpPolicyPorts(natsClientPort),
					From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
						MatchLabels: map[string]string{LabelBrokerClient: in.Broker.Name},
					}}, managerPeer()},
				},
				{
					Ports: tcpPolicyPorts(natsClusterPort),
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: self}}},
				},
				{
					Ports: tcpPolicyPorts(natsMonitorPort),
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: self}}, managerPeer()},
				},
			},
		},
	}
	stamp(np, o, NATSName(in.Broker.Name), ComponentNATS, "")
	return np
}

// managerPeer selects the manager's pods in any namespace, by the labels the
// chart and config/manager give them.
func managerPeer() networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{},
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
			labelName: appName, labelComponent: "manager",
		}},
	}
}
