package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// +kubebuilder:rbac:groups=patchbay.dev,resources=brokers,verbs=list;watch
// +kubebuilder:rbac:groups=patchbay.dev,resources=brokers/status,verbs=patch
// +kubebuilder:rbac:groups=patchbay.dev,resources=brokers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps;services;secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch

// BrokerReconciler runs a NATS cluster with JetStream for each Broker.
type BrokerReconciler struct {
	client   client.Client
	applier  applier
	settings render.Settings
	// admin holds the manager's connections to Brokers: a deleted Broker's is closed.
	admin *natsAdmin
}

// brokerScope is what the phases of one reconcile share.
type brokerScope struct {
	broker  *v1alpha1.Broker
	before  *v1alpha1.Broker
	auth    *natsauth.Broker
	nameErr *nameError
	// applyErrors are the children the API server refused, for the status.
	applyErrors []error
	// storageChange says how spec.jetstream moved away from the live StatefulSet's
	// claim templates, which cannot be updated; empty when it did not.
	storageChange string
	failed        bool
}

func (r *BrokerReconciler) phases() []phase[*brokerScope] {
	return []phase[*brokerScope]{
		{"auth", r.resolveAuth},
		{"children", r.applyChildren},
		{"status", r.writeStatus},
	}
}

// Reconcile runs the phases for one Broker.
func (r *BrokerReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	b := &v1alpha1.Broker{}
	err := r.client.Get(ctx, req.NamespacedName, b)
	if apierrors.IsNotFound(err) || err == nil && !b.DeletionTimestamp.IsZero() {
		r.admin.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	s := &brokerScope{broker: b, before: b.DeepCopy()}
	return runPhases(ctx, s, &s.failed, r.phases())
}

// resolveAuth keeps the keys and JWTs of the existing auth Secret, or
// generates them once. They never change while the Secret exists: servers
// read them at start, and every workflow's credentials are signed with them.
// A deleted Secret makes new ones: the servers restart with the new
// operator, and the Workflows mint new credentials and roll their pods.
func (r *BrokerReconciler) resolveAuth(ctx context.Context, s *brokerScope) (ctrl.Result, error) {
	name := render.NATSAuthSecretName(s.broker.Name)
	if s.nameErr = checkNameLength("Secret", name); s.nameErr != nil {
		return ctrl.Result{}, nil //nolint:nilerr // reported in Ready; a retry cannot shorten the name
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: s.broker.Namespace, Name: name}
	err := r.client.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		err = r.applier.reader.Get(ctx, key, secret)
	}
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get Secret %s: %w", name, err)
	default:
		if s.nameErr = checkControlled(s.broker, "Secret", secret); s.nameErr != nil {
			return ctrl.Result{}, nil //nolint:nilerr // reported in Ready; the holder is left alone
		}
		if auth, ok := natsauth.FromData(secret.Data); ok {
			s.auth = auth
			return ctrl.Result{}, nil
		}
	}
	password, err := newPassword()
	if err != nil {
		return ctrl.Result{}, err
	}
	if s.auth, err = natsauth.NewBroker(s.broker.Name, password); err != nil {
		return ctrl.Result{}, fmt.Errorf("generate the keys of Broker %s: %w", s.broker.Name, err)
	}
	return ctrl.Result{}, nil
}

// newPassword is 128 random bits. It starts with a letter and holds only
// letters and digits, so that nats.conf reads it from the environment as a string.
func newPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate NATS password: %w", err)
	}
	return "pb" + hex.EncodeToString(b), nil
}

func (r *BrokerReconciler) applyChildren(ctx context.Context, s *brokerScope) (ctrl.Result, error) {
	if s.nameErr != nil || s.auth == nil {
		return ctrl.Result{}, nil //nolint:nilerr // nothing to apply: the name error is reported in Ready
	}
	in := &render.BrokerInput{Broker: s.broker, Settings: r.settings, Auth: s.auth}
	change, err := r.detectStorageChange(ctx, s.broker, render.NATSStatefulSet(in))
	if err != nil {
		return ctrl.Result{}, err
	}
	s.storageChange = change
	// With a storage change pending, the servers keep the StatefulSet and the
	// nats.conf they run, so that a restarted server finds no config for
	// storage it does not have.
	held := map[childKey]bool{}
	if change != "" {
		held[childKey{kind: "StatefulSet", name: render.NATSName(s.broker.Name)}] = true
		held[childKey{kind: "ConfigMap", name: render.NATSConfigName(s.broker.Name)}] = true
	}
	var errs []error
	for _, o := range render.BrokerObjects(in) {
		if held[keyOf(o)] {
			continue
		}
		_, err := r.applier.apply(ctx, s.broker, o)
		var nerr *nameError
		switch {
		case errors.As(err, &nerr):
			if s.nameErr == nil {
				s.nameErr = nerr
			}
		case err != nil:
			errs = append(errs, err)
			s.applyErrors = append(s.applyErrors, err)
		}
	}
	return ctrl.Result{}, errors.Join(errs...)
}

// detectStorageChange compares the claim templates of the desired StatefulSet
// with the live one's, if the Broker controls one.
func (r *BrokerReconciler) detectStorageChange(ctx context.Context, b *v1alpha1.Broker, desired *appsv1.StatefulSet) (string, error) {
	live := &appsv1.StatefulSet{}
	err := r.client.Get(ctx, client.ObjectKeyFromObject(desired), live)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get StatefulSet %s: %w", desired.Name, err)
	}
	if ref := metav1.GetControllerOf(live); ref == nil || ref.UID != b.UID || !live.DeletionTimestamp.IsZero() {
		return "", nil
	}
	return storageChange(b, live, desired), nil
}

// writeStatus reads the StatefulSet into the status and patches it once, and
// only if it changed.
func (r *BrokerReconciler) writeStatus(ctx context.Context, s *brokerScope) (ctrl.Result, error) {
	b := s.broker
	b.Status.URL = render.BrokerURL(b.Namespace, b.Name)
	b.Status.Replicas, b.Status.Storage = b.DesiredReplicas(), b.StorageKind()
	b.Status.ReadyReplicas = 0
	readiness := brokerReadiness{nameErr: s.nameErr, applyErrors: s.applyErrors, storageChange: s.storageChange}
	sts := &appsv1.StatefulSet{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: render.NATSName(b.Name)}, sts)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get StatefulSet: %w", err)
	default:
		if ref := metav1.GetControllerOf(sts); ref != nil && ref.UID == b.UID {
			b.Status.ReadyReplicas = sts.Status.ReadyReplicas
			readiness.ready = statefulSetReady(sts, b.DesiredReplicas())
			if s.storageChange != "" {
				// The servers keep what they run: so do the Workflows' streams.
				b.Status.Replicas, b.Status.Storage = appliedStreams(sts)
			}
		}
	}
	setBrokerAvailableCondition(b, readiness)
	if !s.failed && s.nameErr == nil && s.storageChange == "" {
		b.Status.ObservedGeneration = b.Generation
	}
	if equality.Semantic.DeepEqual(s.before.Status, b.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.client.Status().Patch(ctx, b, client.MergeFrom(s.before), client.FieldOwner(FieldOwner)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patch status: %w", err)
	}
	return ctrl.Result{}, nil
}

// appliedStreams are the replicas and the storage of a Broker's live
// StatefulSet: memory storage has no volume claim templates.
func appliedStreams(sts *appsv1.StatefulSet) (int32, v1alpha1.Storage) {
	storage := v1alpha1.StorageFile
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		storage = v1alpha1.StorageMemory
	}
	return ptr.Deref(sts.Spec.Replicas, 1), storage
}

// statefulSetReady reports whether a StatefulSet runs the current template
// with all of the replicas the Broker wants ready.
func statefulSetReady(sts *appsv1.StatefulSet, replicas int32) bool {
	if sts.Spec.Replicas != nil && *sts.Spec.Replicas != replicas {
		return false
	}
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation && st.UpdatedReplicas >= replicas && st.ReadyReplicas >= replicas
}

// SetupWithManager watches Brokers and their children, so that drift is undone.
func (r *BrokerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("broker").
		For(&v1alpha1.Broker{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	return ownChildren(b, ownedByBroker).Complete(r)
}
