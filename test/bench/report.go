package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// verdict is how a row compares with its target.
type verdict int

const (
	info verdict = iota // a figure without a target of its own
	pass
	fail
)

func (v verdict) String() string {
	switch v {
	case pass:
		return "PASS"
	case fail:
		return "FAIL"
	default:
		return "-"
	}
}

// MarshalText writes the verdict as the table prints it.
func (v verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil } //nolint:unparam // encoding.TextMarshaler

// row is one line of the report: a target, what it is compared with, the
// result and the CPU time it cost per request (or per operation, message, run
// or Workflow, as cpu says).
type row struct {
	Section  string  `json:"section"`
	Target   string  `json:"target"`
	Baseline string  `json:"baseline,omitempty"`
	Measured string  `json:"measured"`
	Ratio    string  `json:"ratio,omitempty"`
	CPU      string  `json:"cpuPerRequest"`
	Verdict  verdict `json:"result"`
}

// report collects rows from every section and prints them as one table.
type report struct {
	rows  []row
	notes []string
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }

func (r *report) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// check adds a row whose verdict is ok, printed as PASS or FAIL.
func (r *report) check(section, target, baseline, measured, ratio, cpu string, ok bool) {
	v := fail
	if ok {
		v = pass
	}
	r.add(row{section, target, baseline, measured, ratio, cpu, v})
}

func (r *report) failed() int {
	n := 0
	for _, x := range r.rows {
		if x.Verdict == fail {
			n++
		}
	}
	return n
}

func (r *report) print(w io.Writer, header string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, header)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tTARGET\tBASELINE\tMEASURED\tRATIO\tCPU/REQ\tRESULT")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Section, x.Target, x.Baseline, x.Measured, x.Ratio, x.CPU, x.Verdict)
	}
	_ = tw.Flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "note: "+strings.TrimSpace(n))
		}
	}
}

// jsonReport is the report as -json writes it, so that runs can be compared over time.
type jsonReport struct {
	Time     time.Time `json:"time"`
	Duration string    `json:"duration"`
	Machine  string    `json:"machine"`
	Sections []string  `json:"sections"`
	Rows     []row     `json:"rows"`
	Notes    []string  `json:"notes,omitempty"`
	Failed   int       `json:"failed"`
}

// writeJSON writes the report to file.
func (r *report) writeJSON(file string, start time.Time, machine string, sections []string) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jsonReport{
		Time: start.UTC(), Duration: time.Since(start).Round(time.Second).String(), Machine: machine,
		Sections: sections, Rows: r.rows, Notes: r.notes, Failed: r.failed(),
	}); err != nil {
		return err
	}
	return os.WriteFile(file, b.Bytes(), 0o644)
}

// cpuPer formats CPU time per unit: "123 µs/req".
func cpuPer(d time.Duration, n int64, unit string) string {
	if n <= 0 {
		return "n/a"
	}
	ns := float64(d.Nanoseconds()) / float64(n)
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms/%s", ns/1e6, unit)
	case ns >= 1e3:
		return fmt.Sprintf("%.0f µs/%s", ns/1e3, unit)
	default:
		return fmt.Sprintf("%.0f ns/%s", ns, unit)
	}
}
