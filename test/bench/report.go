package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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

// row is one line of the report: a target, what it is compared with, and the result.
type row struct {
	section  string
	target   string
	baseline string
	measured string
	ratio    string
	verdict  verdict
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
func (r *report) check(section, target, baseline, measured, ratio string, ok bool) {
	v := fail
	if ok {
		v = pass
	}
	r.add(row{section, target, baseline, measured, ratio, v})
}

func (r *report) failed() int {
	n := 0
	for _, x := range r.rows {
		if x.verdict == fail {
			n++
		}
	}
	return n
}

func (r *report) print(w io.Writer, header string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, header)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tTARGET\tBASELINE\tMEASURED\tRATIO\tRESULT")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.section, x.target, x.baseline, x.measured, x.ratio, x.verdict)
	}
	_ = tw.Flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "note: "+strings.TrimSpace(n))
		}
	}
}
