package bus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// DedupeWindow is how long the workflow's stream remembers a message id: a
// message published again with its id within it is stored once.
const DedupeWindow = 2 * time.Minute

// Retention of the workflow's stream and run records. Messages live long
// enough for redeliveries, dead-letter inspection and late GET /runs/{id}.
const (
	streamMaxAge     = 24 * time.Hour
	dedupeWindow     = DedupeWindow
	runsTTL          = 24 * time.Hour
	setupRetryWindow = 2 * time.Minute
)

// Storage is how the broker keeps the workflow's stream and buckets: as many
// replicas as the Broker has servers (1, 3 or 5), on file or in memory. The
// manager takes it from the Broker (render.BrokerStreams) when it creates
// them (EnsureResources). The zero value is one replica on file.
type Storage struct {
	Replicas int
	Type     jetstream.StorageType
}

// DefaultStorage suits a single server, such as dev's embedded one.
var DefaultStorage = Storage{Replicas: 1, Type: jetstream.FileStorage}

// replicas is the JetStream replica count; 0 lets the server pick (1).
func (s Storage) replicas() int { return max(s.Replicas, 1) }

// StreamConfig is the workflow's stream (EnsureResources): one stream
// over pb.<namespace>.<workflow>.>, limits retention (several consumers read
// the same events), and a Nats-Msg-Id dedupe window that covers redeliveries.
func StreamConfig(p *plan.Plan, st Storage) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        p.Stream.Name,
		Description: "patchbay workflow " + p.Namespace + "/" + p.Workflow,
		Subjects:    p.Stream.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     st.Type,
		Replicas:    st.replicas(),
		MaxAge:      streamMaxAge,
		Duplicates:  dedupeWindow,
		MaxMsgSize:  int32(p.MaxMessage()),
	}
}

// DeadLetterStreamConfig is the workflow's dead-letter stream: it sources the
// dead-letter subject of the workflow's stream and keeps the dead letters
// for their own retention (spec.deadLetters.retention), beyond the 24h of
// the workflow's stream.
func DeadLetterStreamConfig(p *plan.Plan, st Storage) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        p.Stream.DeadLetterStream,
		Description: "patchbay dead letters of " + p.Namespace + "/" + p.Workflow,
		Sources:     []*jetstream.StreamSource{{Name: p.Stream.Name, FilterSubject: p.Stream.DeadLetter}},
		Retention:   jetstream.LimitsPolicy,
		Storage:     st.Type,
		Replicas:    st.replicas(),
		MaxAge:      p.Stream.DeadLetterRetention.Duration,
		MaxMsgSize:  int32(p.MaxMessage()),
	}
}

// RunsConfig is the run store's bucket.
func RunsConfig(p *plan.Plan, st Storage) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: p.Stream.RunsBucket, Description: "patchbay runs of " + p.Namespace + "/" + p.Workflow,
		TTL: runsTTL, Storage: st.Type, Replicas: st.replicas(), MaxValueSize: int32(p.MaxMessage()),
	}
}

// ReadModelConfig is the CQRS read store's bucket.
func ReadModelConfig(p *plan.Plan, st Storage) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: p.ReadModel.Bucket, Description: "patchbay read model of " + p.Namespace + "/" + p.Workflow,
		Storage: st.Type, Replicas: st.replicas(),
	}
}

// EnsureResources creates the workflow's streams (its own and its dead-letter
// stream) and KV buckets (runs, idempotency keys and the read model, those the
// Plan has), or brings existing ones to the Plan's and
// st's settings; what already has them is not written. On a Broker the
// manager calls it as an admin of the workflows account, because a
// workflow's own user may not create or change a stream: the subjects of a
// stream it could create would be its own choice, another workflow's
// included (docs/architecture.md, Broker identities). Where the runtime runs
// its own server (dev), the runtime calls it.
func EnsureResources(ctx context.Context, js jetstream.JetStream, p *plan.Plan, st Storage) error {
	if err := ensureStream(ctx, js, StreamConfig(p, st), func(cur *jetstream.StreamConfig) {
		want := StreamConfig(p, st)
		cur.Description, cur.Subjects, cur.Retention = want.Description, want.Subjects, want.Retention
		cur.Storage, cur.Replicas, cur.MaxAge = want.Storage, want.Replicas, want.MaxAge
		cur.Duplicates, cur.MaxMsgSize = want.Duplicates, want.MaxMsgSize
	}); err != nil {
		return err
	}
	if p.Stream.DeadLetterStream != "" {
		if err := ensureStream(ctx, js, DeadLetterStreamConfig(p, st), func(cur *jetstream.StreamConfig) {
			want := DeadLetterStreamConfig(p, st)
			cur.Description, cur.Sources, cur.Retention = want.Description, want.Sources, want.Retention
			cur.Storage, cur.Replicas, cur.MaxAge, cur.MaxMsgSize = want.Storage, want.Replicas, want.MaxAge, want.MaxMsgSize
		}); err != nil {
			return err
		}
	}
	// The run store and the idempotency keys are read through their
	// stream's leader (WaitLeaderBucket): direct gets off.
	if err := ensureBucket(ctx, js, RunsConfig(p, st), false); err != nil {
		return err
	}
	if p.Stream.IdempotencyBucket != "" {
		if err := ensureBucket(ctx, js, IdempotencyConfig(p, st), false); err != nil {
			return err
		}
	}
	if p.ReadModel != nil {
		return ensureBucket(ctx, js, ReadModelConfig(p, st), true)
	}
	return nil
}

// ensureStream creates the stream cfg, or updates it with set if it exists.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, set func(*jetstream.StreamConfig)) error {
	_, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return updateStream(ctx, js, cfg.Name, set)
}

// updateStream applies set to the configuration of the stream name and
// updates the stream if that changed anything.
func updateStream(ctx context.Context, js jetstream.JetStream, name string, set func(*jetstream.StreamConfig)) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	cur := s.CachedInfo().Config
	want := cur
	want.Subjects = slices.Clone(cur.Subjects)
	set(&want)
	if reflect.DeepEqual(cur, want) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s: %w", name, err)
	}
	return nil
}

// ensureBucket creates the bucket cfg, or brings the settings it has from cfg
// to its stream. allowDirect says whether any replica may answer its reads.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, allowDirect bool) error {
	stream := "KV_" + cfg.Bucket
	maxMsgSize := cfg.MaxValueSize
	if maxMsgSize == 0 {
		maxMsgSize = -1
	}
	set := func(c *jetstream.StreamConfig) {
		c.Description, c.MaxAge, c.MaxMsgSize = cfg.Description, cfg.TTL, maxMsgSize
		c.Storage, c.Replicas, c.AllowDirect = cfg.Storage, max(cfg.Replicas, 1), allowDirect
	}
	_, err := js.Stream(ctx, stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("create bucket %s: %w", cfg.Bucket, err)
		}
	case err != nil:
		return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	// A new bucket allows direct gets: set turns them off where asked.
	return updateStream(ctx, js, stream, set)
}

// WaitStream waits until the workflow's stream exists: the manager (or dev)
// creates it, EnsureResources.
func WaitStream(ctx context.Context, js jetstream.JetStream, p *plan.Plan) error {
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	return untilReady(ctx, "wait for stream "+p.Stream.Name+" (the manager creates it)", func(ctx context.Context) error {
		_, err := js.Stream(ctx, p.Stream.Name)
		return err
	})
}

// OpenRuns opens the run store that the manager created, without waiting
// (for tools such as patchbay-runtime dlq).
func OpenRuns(ctx context.Context, js jetstream.JetStream, p *plan.Plan) (*Runs, error) {
	kv, err := js.KeyValue(ctx, p.Stream.RunsBucket)
	if err != nil {
		return nil, fmt.Errorf("open the run store %s: %w", p.Stream.RunsBucket, err)
	}
	return &Runs{KV: kv}, nil
}

// WaitRuns opens the run store once it exists, read through its leader.
//
// A key-value bucket lets any replica answer a read (direct get), and a
// replica that has not caught up answers with an older record or none. A run
// record is read right after another process wrote it (the gateway creates
// it, then an orchestrator on another server reads it), so such a read made
// the orchestrator drop results of runs it could not see, and runs stayed
// pending (seen on the local cluster with three servers). EnsureResources
// turns direct gets off on the run store's stream, and WaitRuns binds only
// after that, so that its reads go to the stream's leader, which has every
// acknowledged write.
func WaitRuns(ctx context.Context, js jetstream.JetStream, p *plan.Plan) (*Runs, error) {
	kv, err := waitLeaderBucket(ctx, js, p.Stream.RunsBucket)
	if err != nil {
		return nil, err
	}
	return &Runs{KV: kv}, nil
}

// waitLeaderBucket opens a bucket whose reads go to its stream's leader (see
// WaitRuns) once the manager made it so.
func waitLeaderBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	var kv jetstream.KeyValue
	err := untilReady(ctx, "wait for bucket "+bucket+" read through its leader (the manager creates it)", func(ctx context.Context) error {
		s, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return err
		}
		if s.CachedInfo().Config.AllowDirect {
			return errors.New("its stream still allows direct gets")
		}
		// The handle reads directly if the stream allowed it when bound.
		kv, err = js.KeyValue(ctx, bucket)
		return err
	})
	return kv, err
}

// WaitReadModel opens the CQRS read store once it exists.
func WaitReadModel(ctx context.Context, js jetstream.JetStream, p *plan.Plan) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	var kv jetstream.KeyValue
	err := untilReady(ctx, "wait for bucket "+p.ReadModel.Bucket+" (the manager creates it)", func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, p.ReadModel.Bucket)
		return err
	})
	return kv, err
}

// EnsureConsumer creates or updates a durable pull consumer with explicit acks.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, p *plan.Plan, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	var c jetstream.Consumer
	err := untilReady(ctx, "create consumer "+cfg.Durable, func(ctx context.Context) (err error) {
		c, err = js.CreateOrUpdateConsumer(ctx, p.Stream.Name, cfg)
		return err
	})
	return c, err
}

// StepConsumerConfig is the JetStream configuration of a plan consumer. The
// broker delivers once more than MaxDeliver: a message whose last attempt was
// cut short (its sidecar died) comes back once so that it is dead-lettered
// rather than dropped.
func StepConsumerConfig(c plan.Consumer) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.Durable,
		FilterSubject: c.FilterSubject,
		MaxAckPending: int(c.MaxAckPending),
		AckWait:       c.AckWait.Duration,
		MaxDeliver:    int(c.MaxDeliver) + 1,
	}
}
