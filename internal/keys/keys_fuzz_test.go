package keys

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, as every leasekit package does.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// nameSeeds are the seed corpus of the name fuzzers: the names that have
// broken key encodings elsewhere (etcd's concurrency package lets "a"
// range over "a/b"), escapes that look encoded already, and the limits.
var nameSeeds = []string{
	"", "a", "a/", "/a", "a/b", "a//b", "/", "//", "%", "%2F", "%2f", "a%2Fb", "%%", "%25",
	"a\x00b", "\x00", "\x7f", " ", "a b", "\t\n", "ü", "日本", "😀", "\xff", "a\xffb", "\xc3",
	".", "..", "a/../b", "*", "?", "\\", "\"", "a-0", "a-1",
	strings.Repeat("x", MaxNameLen), strings.Repeat("x", MaxNameLen+1),
	strings.Repeat("/", MaxNameLen), strings.Repeat("ü", MaxNameLen/2),
}

// valid is the rule Encode documents.
func valid(name string) bool {
	return name != "" && len(name) <= MaxNameLen && utf8.ValidString(name)
}

// FuzzEncode checks Encode on any name: it accepts exactly the valid
// names, its output has no '/' and only printable ASCII, and Decode gives
// the name back.
func FuzzEncode(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		enc, err := Encode(name)
		if !valid(name) {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Encode(%q) = %q, %v; want ErrInvalidName", name, enc, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", name, err)
		}
		if enc == "" || len(enc) > 3*len(name) {
			t.Fatalf("Encode(%q) = %q: bad length", name, enc)
		}
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c == '/' || c < 0x21 || c > 0x7e {
				t.Fatalf("Encode(%q) = %q has byte %#x", name, enc, c)
			}
		}
		dec, err := Decode(enc)
		if err != nil || dec != name {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", name, dec, err)
		}
	})
}

// FuzzEncodeDisjoint checks that the key ranges of two different names
// are disjoint: no "<prefix><enc(a)>/" is a prefix of a key of b.
func FuzzEncodeDisjoint(f *testing.F) {
	for i, a := range nameSeeds {
		f.Add(a, nameSeeds[(i+1)%len(nameSeeds)])
		f.Add(a, a+"/")
		f.Add(a, a+"/b")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, erra := Encode(a)
		eb, errb := Encode(b)
		if erra != nil || errb != nil || a == b {
			return
		}
		const prefix, member = "/leasekit/lock/", "0123456789abcdef-0"
		ka, kb := prefix+ea+"/"+member, prefix+eb+"/"+member
		if ea == eb || strings.HasPrefix(kb, prefix+ea+"/") || strings.HasPrefix(ka, prefix+eb+"/") {
			t.Fatalf("names %q and %q share a key range: %q, %q", a, b, ea, eb)
		}
	})
}

// FuzzDecode checks that Decode never panics, and that what it accepts
// round-trips through Encode whenever the result is a valid name.
func FuzzDecode(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
		if enc, err := Encode(s); err == nil {
			f.Add(enc)
		}
	}
	for _, s := range []string{"%", "%4", "%41", "%4G", "%G4", "%-1", "%+1", "%0x", "%_1", "a%", "%%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, enc string) {
		dec, err := Decode(enc)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Decode(%q): %v does not wrap ErrInvalidName", enc, err)
			}
			return
		}
		if !valid(dec) {
			return
		}
		again, err := Encode(dec)
		if err != nil {
			t.Fatalf("Encode(Decode(%q) = %q): %v", enc, dec, err)
		}
		if back, err := Decode(again); err != nil || back != dec {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", dec, back, err)
		}
	})
}

// FuzzDecodeStrict checks Decode's documented contract: "It reports an
// error for text Encode cannot have produced."
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{"%41", "%2f", "a/b", "", "\xff", " ", "%2F"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, enc string) {
		dec, err := Decode(enc)
		if err != nil {
			return
		}
		if again, err := Encode(dec); err != nil || again != enc {
			t.Fatalf("Decode(%q) = %q, but Encode gives %q, %v", enc, dec, again, err)
		}
	})
}
