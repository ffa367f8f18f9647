package contract

import (
	"bytes"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
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
