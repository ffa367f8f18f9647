package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// BrokerCleanupFinalizer holds a Workflow that uses a Broker until its
// stream, consumers, KV buckets and NATS user are deleted from the Broker, or
// the Broker is gone.
const BrokerCleanupFinalizer = "patchbay.dev/broker-cleanup"

// errBrokerGone says that a Workflow's Broker does not exist (or is being
// deleted): nothing of the Workflow is left on it to clean up.
var errBrokerGone = errors.New("the Broker is gone")

// brokerAuth reads the auth Secret of b; nil while the Broker's controller
// has not written it yet.
func (r *WorkflowReconciler) brokerAuth(ctx context.Context, b *v1alpha1.Broker) (*natsauth.Broker, error) {
	secret := &corev1.Secret{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: render.NATSAuthSecretName(b.Name)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get the auth Secret of Broker %s: %w", b.Name, err)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != b.UID {
		return nil, nil
	}
	auth, ok := natsauth.FromData(secret.Data)
	if !ok {
		return nil, nil
	}
	return auth, nil
}

// credentialsSecret reads the Workflow's credentials Secret if the Workflow
// controls it.
func (r *WorkflowReconciler) credentialsSecret(ctx context.Context, wf *v1alpha1.Workflow) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: render.WorkflowCredentialsSecretName(wf.Name)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get Secret %s: %w", render.WorkflowCredentialsSecretName(wf.Name), err)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != wf.UID {
		return nil, nil
	}
	return secret, nil
}

// resolveCredentials gives a Workflow that uses a Broker its own NATS user
// (natsauth.WorkflowPermissions) in <workflow>-nats-credentials, and its pod
// templates the hash of it. Credentials are kept while they are the
// Broker's, carry the plan's permissions and expire in more than
// natsauth.UserRenewBefore; otherwise (a deleted Secret, a Broker with new
// keys, a plan whose names changed, an old JWT) new ones are minted, the
// pods roll, and the user they replace (named on the plan ConfigMap,
// render.AnnotationNATSUser) is revoked. Without the Broker's keys (no
// Broker yet) an existing Secret is kept as it is.
func (r *WorkflowReconciler) resolveCredentials(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil || !s.broker.needed || s.plan.Stream == nil {
		return ctrl.Result{}, nil
	}
	name := render.WorkflowCredentialsSecretName(s.wf.Name)
	if nerr := checkNameLength("Secret", name); nerr != nil {
		s.nameErrors = append(s.nameErrors, nerr)
		return ctrl.Result{}, nil
	}
	existing, err := r.credentialsSecret(ctx, s.wf)
	if err != nil {
		return ctrl.Result{}, err
	}
	previous, err := r.recordedUser(ctx, s.wf)
	if err != nil {
		return ctrl.Result{}, err
	}
	var creds []byte
	if existing != nil {
		creds = existing.Data[natsauth.CredentialsKey]
	}
	var auth *natsauth.Broker
	if s.broker.broker != nil {
		if auth, err = r.brokerAuth(ctx, s.broker.broker); err != nil {
			return ctrl.Result{}, err
		}
	}
	if auth == nil {
		if existing != nil {
			s.desired[childKey{kind: "Secret", name: name}] = true
			s.input.NATSCredentialsHash = render.CredentialsHash(creds)
			s.input.NATSUser = previous
		}
		return ctrl.Result{}, nil
	}
	var user string
	var renewAt time.Time
	if creds != nil {
		uc, err := auth.UserOf(creds)
		if err == nil && samePermissions(uc.Permissions.Pub.Allow, uc.Permissions.Sub.Allow, natsauth.WorkflowPermissions(s.plan)) &&
			time.Now().Before(natsauth.RenewAt(uc)) {
			user, renewAt = uc.Subject, natsauth.RenewAt(uc)
		}
	}
	if user == "" {
		u, err := auth.NewWorkflowUser(s.plan)
		if err != nil {
			return ctrl.Result{}, err
		}
		creds, user = u.Creds, u.PublicKey
		renewAt = time.Now().Add(natsauth.UserLifetime - natsauth.UserRenewBefore)
	}
	s.input.NATSCredentialsHash = render.CredentialsHash(creds)
	s.input.NATSUser = user
	if err := r.applyChildren(ctx, s, render.WorkflowCredentialsSecret(s.input, creds)); err != nil {
		return ctrl.Result{}, err
	}
	if previous != "" && previous != user {
		if err := r.revokeUser(ctx, s.broker.broker, auth, previous); err != nil {
			// The new user works; the old one stays named on the plan
			// ConfigMap only until it is rewritten, so say so.
			log.FromContext(ctx).Error(err, "Cannot revoke the replaced NATS user", "broker", s.broker.name, "user", previous)
			r.recorder.Eventf(s.wf, nil, corev1.EventTypeWarning, "RevokeFailed", "Revoke",
				"%s", eventNote(fmt.Sprintf("Cannot revoke the replaced NATS user %s on Broker %s: %v", previous, s.broker.name, err)))
		}
	}
	// Renewed before they expire, whether or not anything else happens.
	return ctrl.Result{RequeueAfter: time.Until(renewAt)}, nil
}

// ReasonBrokerResourcesPending is the reason of the Warning event that says
// a Workflow's stream and buckets could not be made on its Broker.
const ReasonBrokerResourcesPending = "BrokerResourcesPending"

// brokerResourcesRetry is how soon a Workflow whose stream and buckets could
// not be made on its Broker tries again, when no event of the Broker comes
// first.
const brokerResourcesRetry = 10 * time.Second

// ensureBrokerResources creates the Workflow's stream and KV buckets on its
// Broker, or updates them to its Plan and the Broker's storage: its own NATS
// user may not (natsauth.WorkflowPermissions), and its roles wait, not
// ready, until they exist. The consumers are the roles' own to create, on
// that stream only. A Broker that cannot be reached or refuses is reported
// in a Warning event and retried; it does not hold the rest of the
// reconcile, and the Workflow's readiness follows its pods', which wait.
// (BrokerReady stays about the Broker itself: a Broker whose servers run
// answers in the end, and a simulated one, such as kwok's, never does.)
func (r *WorkflowReconciler) ensureBrokerResources(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil || s.plan.Stream == nil || s.broker.broker == nil || s.input.Streams == nil {
		return ctrl.Result{}, nil
	}
	auth, err := r.brokerAuth(ctx, s.broker.broker)
	if err != nil || auth == nil {
		// Without its keys the Broker has no servers to create them on yet;
		// the auth Secret's creation reconciles the Workflow again.
		return ctrl.Result{}, err
	}
	c, err := r.admin.conn(s.broker.broker, auth)
	if errors.Is(err, errNoURL) {
		// Its status, which brings the URL, reconciles the Workflow again.
		return ctrl.Result{}, nil
	}
	if err == nil {
		err = c.ensureResources(ctx, s.plan, s.input.Streams)
	}
	if err != nil {
		log.FromContext(ctx).V(1).Info("Cannot create the stream and buckets on the Broker yet", "broker", s.broker.name, "err", err.Error())
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeWarning, ReasonBrokerResourcesPending, "CreateStream", "%s",
			eventNote(fmt.Sprintf("Creating or updating this Workflow's stream and buckets on Broker %s failed; retrying every %s: %v", s.broker.name, brokerResourcesRetry, err)))
		return ctrl.Result{RequeueAfter: brokerResourcesRetry}, nil
	}
	return ctrl.Result{}, nil
}

// recordedUser is the user named on the Workflow's plan ConfigMap.
func (r *WorkflowReconciler) recordedUser(ctx context.Context, wf *v1alpha1.Workflow) (string, error) {
	cm := &corev1.ConfigMap{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: plan.ConfigMapName(wf.Name, wf.Spec.Style)}, cm)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("get ConfigMap %s: %w", plan.ConfigMapName(wf.Name, wf.Spec.Style), err)
	}
	if ref := metav1.GetControllerOf(cm); ref == nil || ref.UID != wf.UID {
		return "", nil
	}
	return cm.Annotations[render.AnnotationNATSUser], nil
}

func samePermissions(pub, sub []string, want *jwt.Permissions) bool {
	return slices.Equal(pub, want.Pub.Allow) && slices.Equal(sub, want.Sub.Allow)
}

func (r *WorkflowReconciler) revokeUser(ctx context.Context, b *v1alpha1.Broker, auth *natsauth.Broker, users ...string) error {
	c, err := r.admin.conn(b, auth)
	if err != nil {
		return err
	}
	return c.revoke(ctx, users...)
}

// ensureFinalizer adds BrokerCleanupFinalizer to a Workflow that uses a Broker.
func (r *WorkflowReconciler) ensureFinalizer(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if !s.broker.needed || controllerutil.ContainsFinalizer(s.wf, BrokerCleanupFinalizer) {
		return ctrl.Result{}, nil
	}
	before := s.wf.DeepCopy()
	controllerutil.AddFinalizer(s.wf, BrokerCleanupFinalizer)
	if err := r.client.Patch(ctx, s.wf, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
	}
	// The status patch of this reconcile starts from the patched object.
	s.before.ResourceVersion = s.wf.ResourceVersion
	s.before.Finalizers = s.wf.Finalizers
	return ctrl.Result{}, nil
}

// finalize cleans a deleted Workflow off its Broker and then lets it go. A
// Broker that does not answer holds the Workflow, with BrokerReady false and
// a Warning event, and is retried with the controller's backoff; once the
// Broker itself is gone, nothing is left to clean and the Workflow goes.
func (r *WorkflowReconciler) finalize(ctx context.Context, wf *v1alpha1.Workflow) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(wf, BrokerCleanupFinalizer) {
		return ctrl.Result{}, nil
	}
	err := r.BrokerCleanup(ctx, wf, nil)
	if err != nil && !errors.Is(err, errBrokerGone) {
		before := wf.DeepCopy()
		setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionBrokerReady, metav1.ConditionFalse, v1alpha1.ReasonBrokerCleanupPending,
			fmt.Sprintf("Deleting the stream, buckets and user of this Workflow from Broker %s failed; retrying until it succeeds or the Broker is deleted: %v", wf.BrokerName(), err))
		if perr := r.client.Status().Patch(ctx, wf, client.MergeFrom(before), client.FieldOwner(FieldOwner)); perr != nil && !apierrors.IsNotFound(perr) {
			log.FromContext(ctx).Error(perr, "Cannot report the pending broker cleanup")
		}
		r.recorder.Eventf(wf, nil, corev1.EventTypeWarning, v1alpha1.ReasonBrokerCleanupPending, "Delete", "%s", eventNote(err.Error()))
		return ctrl.Result{}, err
	}
	before := wf.DeepCopy()
	controllerutil.RemoveFinalizer(wf, BrokerCleanupFinalizer)
	if err := r.client.Patch(ctx, wf, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// BrokerCleanup deletes from a Workflow's Broker what keep does not need.
//
// With keep nil (the Workflow is deleted, or its new style is synchronous)
// it deletes the Workflow's stream with all of its consumers, its KV buckets
// (runs and read model) and revokes its NATS user. With keep the Workflow's
// new plan of an async style, it deletes only the consumers of the stream
// that keep does not name (such as the orchestrator's and the steps' command
// consumers after a switch to choreography) and the read-model bucket if
// keep has none; the stream, the runs bucket and the user stay.
//
// Call it once the runs of the old style have ended: what it deletes is gone,
// messages included. It returns an error wrapping errBrokerGone when the
// Broker does not exist or is being deleted (nothing is left to delete), and
// another error when the Broker cannot be reached or refuses, to be retried.
func (r *WorkflowReconciler) BrokerCleanup(ctx context.Context, wf *v1alpha1.Workflow, keep *plan.Plan) error {
	b := &v1alpha1.Broker{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: wf.BrokerName()}, b)
	switch {
	case apierrors.IsNotFound(err):
		r.admin.forget(types.NamespacedName{Namespace: wf.Namespace, Name: wf.BrokerName()})
		return fmt.Errorf("Broker %s: %w", wf.BrokerName(), errBrokerGone)
	case err != nil:
		return fmt.Errorf("get Broker %s: %w", wf.BrokerName(), err)
	case !b.DeletionTimestamp.IsZero():
		return fmt.Errorf("Broker %s is being deleted: %w", wf.BrokerName(), errBrokerGone)
	}
	auth, err := r.brokerAuth(ctx, b)
	if err != nil {
		return err
	}
	if auth == nil {
		return fmt.Errorf("Broker %s has no keys yet (Secret %s)", b.Name, render.NATSAuthSecretName(b.Name))
	}
	c, err := r.admin.conn(b, auth)
	if err != nil {
		return err
	}
	res := topology.WorkflowBrokerResources(wf.Namespace, wf.Name)
	if keep != nil && keep.Stream != nil {
		return c.pruneForPlan(ctx, res, keep)
	}
	if err := c.deleteResources(ctx, res, false, false); err != nil {
		return err
	}
	var users []string
	if u, err := r.recordedUser(ctx, wf); err != nil {
		return err
	} else if u != "" {
		users = append(users, u)
	}
	secret, err := r.credentialsSecret(ctx, wf)
	if err != nil {
		return err
	}
	if secret != nil {
		if uc, err := auth.UserOf(secret.Data[natsauth.CredentialsKey]); err == nil && !slices.Contains(users, uc.Subject) {
			users = append(users, uc.Subject)
		}
	}
	return c.revoke(ctx, users...)
}

// pruneForPlan deletes the consumers of the stream that p does not name, and
// the read-model bucket when p has no read model.
func (c *brokerConn) pruneForPlan(ctx context.Context, res topology.BrokerResources, p *plan.Plan) error {
	ctx, cancel := context.WithTimeout(ctx, natsAdminTimeout)
	defer cancel()
	keep := map[string]bool{}
	for _, st := range p.Steps {
		for _, cons := range st.Consumers {
			keep[cons.Durable] = true
		}
	}
	for _, d := range []string{p.Stream.OrchestratorDurable, p.Stream.CompletionDurable, p.Stream.DeadlineDurable} {
		keep[d] = d != ""
	}
	if p.ReadModel != nil {
		keep[p.ReadModel.Durable] = true
	}
	var errs []error
	stream, err := c.js.Stream(ctx, res.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return fmt.Errorf("stream %s: %w", res.Stream, err)
	default:
		names := stream.ConsumerNames(ctx)
		for name := range names.Name() {
			if keep[name] {
				continue
			}
			if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				errs = append(errs, fmt.Errorf("delete consumer %s: %w", name, err))
			}
		}
		if err := names.Err(); err != nil {
			errs = append(errs, fmt.Errorf("list the consumers of %s: %w", res.Stream, err))
		}
	}
	if p.ReadModel == nil {
		for _, bucket := range res.Buckets {
			if bucket == p.Stream.RunsBucket || bucket == p.Stream.IdempotencyBucket {
				continue
			}
			if err := c.js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				errs = append(errs, fmt.Errorf("delete bucket %s: %w", bucket, err))
			}
		}
	}
	return errors.Join(errs...)
}
