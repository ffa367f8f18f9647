package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Retention of the workflow's stream and run records. Messages live long
// enough for redeliveries, dead-letter inspection and late GET /runs/{id}.
const (
	streamMaxAge     = 24 * time.Hour
	dedupeWindow     = 2 * time.Minute
	runsTTL          = 24 * time.Hour
	setupRetryWindow = 2 * time.Minute
)

// Storage is how the broker keeps the workflow's stream and buckets: as many
// replicas as the Broker has servers (1, 3 or 5), on file or in memory. The
// operator renders it from the Broker into --stream-replicas and
// --stream-storage. The zero value is one replica on file.
type Storage struct {
	Replicas int
	Type     jetstream.StorageType
}

// DefaultStorage suits a single server, such as dev's embedded one.
var DefaultStorage = Storage{Replicas: 1, Type: jetstream.FileStorage}

// replicas is the JetStream replica count; 0 lets the server pick (1).
func (s Storage) replicas() int { return max(s.Replicas, 1) }

// StreamConfig is the workflow's stream as every role declares it: one stream
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

// EnsureStream creates or updates the workflow's stream and its dead-letter
// stream. Every role calls it with the same configuration, so the order in
// which pods start never matters.
func EnsureStream(ctx context.Context, js jetstream.JetStream, p *plan.Plan, st Storage) error {
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	err := untilReady(ctx, "create stream "+p.Stream.Name, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, StreamConfig(p, st))
		return err
	})
	if err != nil || p.Stream.DeadLetterStream == "" {
		return err
	}
	return untilReady(ctx, "create stream "+p.Stream.DeadLetterStream, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, DeadLetterStreamConfig(p, st))
		return err
	})
}

// RunsConfig is the run store's bucket.
func RunsConfig(p *plan.Plan, st Storage) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: p.Stream.RunsBucket, Description: "patchbay runs of " + p.Namespace + "/" + p.Workflow,
		TTL: runsTTL, Storage: st.Type, Replicas: st.replicas(), MaxValueSize: int32(p.MaxMessage()),
	}
}

// OpenRuns opens the run store that the roles created, without changing its
// configuration (for tools such as patchbay-runtime dlq).
func OpenRuns(ctx context.Context, js jetstream.JetStream, p *plan.Plan) (*Runs, error) {
	kv, err := js.KeyValue(ctx, p.Stream.RunsBucket)
	if err != nil {
		return nil, fmt.Errorf("open the run store %s: %w", p.Stream.RunsBucket, err)
	}
	return &Runs{KV: kv}, nil
}

// ReadModelConfig is the CQRS read store's bucket.
func ReadModelConfig(p *plan.Plan, st Storage) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: p.ReadModel.Bucket, Description: "patchbay read model of " + p.Namespace + "/" + p.Workflow,
		Storage: st.Type, Replicas: st.replicas(),
	}
}

// EnsureRuns creates or opens the run store, read through its leader.
//
// A key-value bucket lets any replica answer a read (direct get), and a
// replica that has not caught up answers with an older record or none. A run
// record is read right after another process wrote it (the gateway creates
// it, then an orchestrator on another server reads it), so such a read made
// the orchestrator drop results of runs it could not see, and runs stayed
// pending (seen on the local cluster with three servers). The run store turns
// direct gets off on its stream and binds after that, so that its reads go to
// the stream's leader, which has every acknowledged write.
func EnsureRuns(ctx context.Context, js jetstream.JetStream, p *plan.Plan, st Storage) (*Runs, error) {
	kv, err := ensureLeaderBucket(ctx, js, RunsConfig(p, st))
	if err != nil {
		return nil, err
	}
	return &Runs{KV: kv}, nil
}

// ensureLeaderBucket creates or opens a bucket whose reads go to its
// stream's leader (see EnsureRuns).
func ensureLeaderBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if _, err := ensureBucket(ctx, js, cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	var kv jetstream.KeyValue
	err := untilReady(ctx, "read bucket "+cfg.Bucket+" through its leader", func(ctx context.Context) error {
		s, err := js.Stream(ctx, "KV_"+cfg.Bucket)
		if err != nil {
			return err
		}
		if sc := s.CachedInfo().Config; sc.AllowDirect {
			sc.AllowDirect = false
			if _, err := js.UpdateStream(ctx, sc); err != nil {
				return err
			}
		}
		// The handle reads directly if the stream allowed it when bound.
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		return err
	})
	if err != nil {
		return nil, err
	}
	return kv, nil
}

// EnsureReadModel creates or opens the CQRS read store.
func EnsureReadModel(ctx context.Context, js jetstream.JetStream, p *plan.Plan, st Storage) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, ReadModelConfig(p, st))
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, setupRetryWindow)
	defer cancel()
	var kv jetstream.KeyValue
	err := untilReady(ctx, "create bucket "+cfg.Bucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
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
