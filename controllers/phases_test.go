package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestRunPhases(t *testing.T) {
	type scope struct {
		ran       []string
		failed    bool
		sawFailed bool
	}
	step := func(name string, after time.Duration, err error) phase[*scope] {
		return phase[*scope]{name, func(_ context.Context, s *scope) (ctrl.Result, error) {
			s.ran = append(s.ran, name)
			s.sawFailed = s.failed
			return ctrl.Result{RequeueAfter: after}, err
		}}
	}
	boom, bang := errors.New("boom"), errors.New("bang")
	s := &scope{}
	res, err := runPhases(context.Background(), s, &s.failed, []phase[*scope]{
		step("a", 0, nil), step("b", time.Minute, boom), step("c", 10*time.Second, bang), step("d", 0, nil),
	})
	if len(s.ran) != 4 {
		t.Errorf("ran %v, want every phase", s.ran)
	}
	if !errors.Is(err, boom) || !errors.Is(err, bang) || err.Error() != "b: boom\nc: bang" {
		t.Errorf("err = %q, want both errors named by phase", err)
	}
	if res.RequeueAfter != 10*time.Second {
		t.Errorf("requeue after %v, want the shortest", res.RequeueAfter)
	}
	if !s.failed || !s.sawFailed {
		t.Errorf("later phases did not see the failure")
	}
}

func TestShortest(t *testing.T) {
	r := func(d time.Duration) ctrl.Result { return ctrl.Result{RequeueAfter: d} }
	tests := []struct {
		a, b, want ctrl.Result
	}{
		{r(0), r(0), r(0)},
		{r(0), r(time.Second), r(time.Second)},
		{r(time.Second), r(0), r(time.Second)},
		{r(time.Minute), r(time.Second), r(time.Second)},
	}
	for _, tt := range tests {
		if got := shortest(tt.a, tt.b); got != tt.want {
			t.Errorf("shortest(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
