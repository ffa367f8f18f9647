package contract

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []Part
		want  string
	}{
		{"outputs by name", []Part{{Name: "a", Body: []byte(`{"x":1}`)}, {Name: "b", Body: []byte(" 2\n")}}, `{"a":{"x":1},"b":2}`},
		{"sub-chain objects are flattened", []Part{{Name: "a", Body: []byte(`"s"`)}, {Body: []byte(`{"d":4,"c":3}`), Object: true}}, `{"a":"s","c":3,"d":4}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var buf bytes.Buffer
			g.Expect(Merge(&buf, "x", tc.parts)).To(Succeed())
			g.Expect(buf.String()).To(MatchJSON(tc.want))
			g.Expect(buf.String()).To(Equal(tc.want), "keys keep the order of the parts")
		})
	}
}

func TestMergeNamesTheStepWhoseOutputIsNotJSON(t *testing.T) {
	g := NewWithT(t)
	var buf bytes.Buffer
	e := Merge(&buf, "step confirm", []Part{{Name: "a", Producer: "a", Body: []byte(`{}`)}, {Name: "b", Producer: "b", Body: []byte(`not json`)}})
	g.Expect(e).To(HaveOccurred())
	g.Expect(e.Code).To(Equal(http.StatusBadGateway))
	g.Expect(e.Step).To(Equal("b"))
	g.Expect(e.Message).To(ContainSubstring("confirm"))
}

// Outputs merged over the size budget fail with 413, naming the steps.
func TestMergeOverTheBudgetIs413NamingTheSteps(t *testing.T) {
	half := []byte(`"` + strings.Repeat("x", plan.DefaultMaxBodyLen/2) + `"`)
	var buf bytes.Buffer
	herr := Merge(&buf, "step join", []Part{{Name: "left", Producer: "left", Body: half}, {Name: "right", Producer: "right", Body: half}})
	if herr == nil || herr.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want a 413", herr)
	}
	for _, want := range []string{"left", "right", "step join"} {
		if !strings.Contains(herr.Message, want) {
			t.Errorf("%q does not name %s", herr.Message, want)
		}
	}
	buf.Reset()
	if herr := Merge(&buf, "step join", []Part{{Name: "left", Producer: "left", Body: half}}); herr != nil {
		t.Fatalf("one half fits the budget: %v", herr)
	}
}
