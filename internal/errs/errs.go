// Package errs joins errors on one line. errors.Join separates its errors
// with newlines, which splits one error across lines in a log pipeline
// that reads a line per record; every error leasekit returns is one line.
package errs

import (
	"fmt"
	"strings"
)

// Join returns an error that wraps every non-nil error in errs, for
// errors.Is and errors.As, and reads as their messages separated by "; ".
// It returns nil if every error is nil, and the error itself if only one
// is not.
func Join(errs ...error) error {
	var kept []any
	for _, err := range errs {
		if err != nil {
			kept = append(kept, err)
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case 1:
		return kept[0].(error)
	}
	return fmt.Errorf(strings.TrimSuffix(strings.Repeat("%w; ", len(kept)), "; "), kept...)
}
