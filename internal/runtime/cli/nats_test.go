package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

func TestStreamFlagsOfEveryRoleThatTalksToNATS(t *testing.T) {
	parsers := map[string]func([]string) (*natsFlags, error){
		"sidecar": func(args []string) (*natsFlags, error) {
			f, err := parseSidecar(append([]string{"--step=s"}, args...), &bytes.Buffer{})
			if err != nil {
				return nil, err
			}
			return &f.nats, nil
		},
		"orchestrator": func(args []string) (*natsFlags, error) {
			f, err := parseOrchestrator(args, &bytes.Buffer{})
			if err != nil {
				return nil, err
			}
			return &f.nats, nil
		},
		"gateway": func(args []string) (*natsFlags, error) {
			f, err := parseGateway(args, &bytes.Buffer{})
			if err != nil {
				return nil, err
			}
			return &f.nats, nil
		},
	}
	for role, parse := range parsers {
		t.Run(role, func(t *testing.T) {
			g := NewWithT(t)
			f, err := parse(nil)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(f.storage).To(Equal(bus.DefaultStorage))

			f, err = parse([]string{"--stream-replicas=3", "--stream-storage=memory"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(f.storage).To(Equal(bus.Storage{Replicas: 3, Type: jetstream.MemoryStorage}))
			f, err = parse([]string{"--stream-replicas=5", "--stream-storage=file"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(f.storage).To(Equal(bus.Storage{Replicas: 5, Type: jetstream.FileStorage}))

			for _, bad := range []string{"--stream-replicas=2", "--stream-replicas=0", "--stream-replicas=three", "--stream-storage=disk", "--stream-storage="} {
				_, err := parse([]string{bad})
				g.Expect(err).To(MatchError(HavePrefix(bad+": want ")), bad)
			}
		})
	}
}

func TestBadStreamFlagsExitWithOneLine(t *testing.T) {
	for role, args := range map[string][]string{
		"sidecar":      {"sidecar", "--step=s", "--stream-replicas=2"},
		"orchestrator": {"orchestrator", "--stream-replicas=2"},
		"gateway":      {"gateway", "--stream-replicas=2"},
	} {
		t.Run(role, func(t *testing.T) {
			g := NewWithT(t)
			var stdout, stderr bytes.Buffer
			g.Expect(Main(context.Background(), args, &stdout, &stderr)).To(Equal(1))
			g.Expect(strings.TrimSpace(stderr.String())).To(Equal("patchbay-runtime: --stream-replicas=2: want 1, 3 or 5"))
		})
	}
}
