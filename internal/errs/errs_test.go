package errs_test

import (
	"errors"
	"testing"

	"github.com/leasekit/leasekit/internal/errs"
)

func TestJoin(t *testing.T) {
	a, b := errors.New("a"), errors.New("b\nc")
	for _, tc := range []struct {
		in   []error
		want string
	}{
		{nil, ""},
		{[]error{nil, nil}, ""},
		{[]error{nil, a}, "a"},
		{[]error{a, nil, errors.New("x")}, "a; x"},
	} {
		err := errs.Join(tc.in...)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Join(%v) = %v, want nil", tc.in, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("Join(%v) = %v, want %q", tc.in, err, tc.want)
		}
	}
	err := errs.Join(a, b)
	if !errors.Is(err, a) || !errors.Is(err, b) {
		t.Errorf("Join(a, b) = %v does not wrap both", err)
	}
}
