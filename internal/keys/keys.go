// Package keys encodes user-chosen names into etcd key segments.
//
// An encoded name never contains '/', so the key range "<prefix><name>/"
// of one name never contains the keys of another: the lock "a" and the lock
// "a/b" are disjoint, which etcd's concurrency package does not guarantee.
package keys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest name, in bytes before encoding, that Encode
// accepts. Keys stay well below etcd's request size limit even when every
// byte needs escaping.
const MaxNameLen = 1024

// ErrInvalidName is wrapped by every error Encode returns.
var ErrInvalidName = errors.New("invalid name")

// Encode validates name and returns it with '%', '/' and every byte that is
// not printable ASCII percent-escaped. Printable names stay readable in
// etcdctl output: "orders/42" becomes "orders%2F42".
func Encode(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return "", fmt.Errorf("%w: %d bytes; the limit is %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '%' || c == '/' || c < 0x21 || c > 0x7e {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// Decode reverses Encode. It reports an error for text Encode cannot have
// produced, such as "%41", "%2f" or "a/b".
func Decode(enc string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(enc) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrInvalidName, enc)
		}
		v, err := strconv.ParseUint(enc[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("%w: bad escape in %q", ErrInvalidName, enc)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	// Encode has one output per name: anything else is not its.
	name := b.String()
	if again, err := Encode(name); err != nil || again != enc {
		return "", fmt.Errorf("%w: %q is not an encoded name", ErrInvalidName, enc)
	}
	return name, nil
}

// Prefix normalises a key prefix: it must be non-empty and ends in '/'.
func Prefix(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty key prefix")
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, nil
}
