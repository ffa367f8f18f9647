package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// Marshal renders the plan as indented JSON with a trailing newline. It is
// deterministic: every list in a Plan is in a defined order. Characters such
// as '>' (in stream subjects) are written as they are, not HTML-escaped, so
// that the plan reads well in ConfigMaps and golden files.
func (p *Plan) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Hash is a short, stable digest of the marshalled plan; pods carry it as an
// annotation so that a changed plan rolls them.
func (p *Plan) Hash() (string, error) {
	b, err := p.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}

// Parse reads a plan and checks its version, and that it has a stream
// exactly when its style is async.
func Parse(b []byte) (*Plan, error) {
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("plan is not valid JSON: %w", err)
	}
	if p.Version != Version {
		return nil, fmt.Errorf("plan version %q is not supported: this runtime reads %q", p.Version, Version)
	}
	if p.Style.IsAsync() != (p.Stream != nil) {
		// The runtime asks p.Style whether the workflow is async, and then uses p.Stream.
		return nil, fmt.Errorf("plan of workflow %s is inconsistent: style %s, stream %v", p.Workflow, p.Style, p.Stream != nil)
	}
	return &p, nil
}

// Load reads a plan from a file.
func Load(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}
