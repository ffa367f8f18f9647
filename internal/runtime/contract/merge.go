package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Part is one named output going into a merged JSON object.
type Part struct {
	// Name is the key in the object.
	Name string
	// Producer is the step that produced Body, named when Body is not JSON.
	Producer string
	Body     []byte
	// Object is true when Body is itself an object of named outputs whose keys
	// are copied into the merged object (a sub-chain with several sinks).
	Object bool
}

// Merge writes the JSON object {name: output, ...} of parts into buf (docs/step-contract.md:
// the input of a step with several dependencies, the result of several sinks).
// An output that is not JSON cannot be merged and fails the run, naming the
// step that produced it; a merged object over the size budget
// (plan.DefaultMaxBodyLen) fails it with 413, naming the steps merged.
func Merge(buf *bytes.Buffer, into string, parts []Part) *Error {
	buf.WriteByte('{')
	first := true
	key := func(name string) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name)
		buf.Write(k)
		buf.WriteByte(':')
	}
	for _, p := range parts {
		if !json.Valid(p.Body) {
			return &Error{
				Code: http.StatusBadGateway, Step: p.Producer, Status: http.StatusOK, Attempts: 1,
				Message: fmt.Sprintf("step %s answered with a body that is not JSON, but %s merges it into a JSON object", p.Producer, into),
			}
		}
		if !p.Object {
			key(p.Name)
			buf.Write(bytes.TrimSpace(p.Body))
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(p.Body, &obj); err != nil {
			return &Error{Code: http.StatusBadGateway, Step: p.Producer, Message: fmt.Sprintf("the outputs of the steps after %s are not a JSON object: %v", p.Producer, err)}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			key(k)
			buf.Write(obj[k])
		}
	}
	buf.WriteByte('}')
	if buf.Len() > plan.DefaultMaxBodyLen {
		names := make([]string, len(parts))
		for i, p := range parts {
			names[i] = p.Producer
		}
		return &Error{Code: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf(
			"the outputs of steps %s merged into %s are %d bytes, over the size budget of %d", strings.Join(names, ", "), into, buf.Len(), plan.DefaultMaxBodyLen)}
	}
	return nil
}
