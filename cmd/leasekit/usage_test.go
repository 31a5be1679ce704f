//go:build unix

package main

import (
	"strings"
	"testing"
)

// TestUsageErrors checks that bad command lines exit 64 with one line on
// stderr, before any attempt to reach etcd (the endpoint is unreachable).
// The table runs in-process; a few cases run the binary too.
func TestUsageErrors(t *testing.T) {
	const nowhere = "--endpoints=127.0.0.1:1"
	binary := map[string]bool{"no --": true, "empty name": true, "TTL below 1s": true, "unknown flag": true}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "missing command"},
		{"unknown command", []string{"lok"}, "unknown command"},
		{"no --", []string{"lock", nowhere, "x", "true"}, "missing --"},
		{"nothing after --", []string{"lock", nowhere, "x", "--"}, "no command after --"},
		{"empty name", []string{"lock", nowhere, "", "--", "true"}, "NAME is empty"},
		{"no name", []string{"lock", nowhere, "--", "true"}, "missing NAME"},
		{"two names", []string{"lock", nowhere, "a", "b", "--", "true"}, "one NAME"},
		{"TTL below 1s", []string{"lock", nowhere, "--ttl=500ms", "x", "--", "true"}, "below 1s"},
		{"unknown flag", []string{"lock", nowhere, "--bogus", "x", "--", "true"}, "not defined: -bogus"},
		{"unknown flag after NAME", []string{"lock", nowhere, "x", "--bogus", "--", "true"}, "not defined: -bogus"},
		{"bad duration", []string{"lock", nowhere, "--timeout=soon", "x", "--", "true"}, "invalid value"},
		{"try and timeout", []string{"lock", nowhere, "--try", "--timeout=1s", "x", "--", "true"}, "exclude"},
		{"sem without limit", []string{"sem", nowhere, "x", "--", "true"}, "--limit"},
		{"sem limit 0", []string{"sem", nowhere, "--limit=0", "x", "--", "true"}, "at least 1"},
		{"elect empty name", []string{"elect", nowhere, "", "--", "true"}, "NAME is empty"},
		{"elect TTL", []string{"elect", nowhere, "--ttl=0s", "x", "--", "true"}, "below 1s"},
		{"inspect --", []string{"inspect", nowhere, "x", "--", "true"}, "unexpected --"},
		{"inspect prefix without kind", []string{"inspect", nowhere, "--prefix=/p/", "x"}, "--kind"},
		{"inspect bad kind", []string{"inspect", nowhere, "--kind=queue", "x"}, "--kind"},
		{"unlock without --force", []string{"unlock", nowhere, "x"}, "--force"},
		{"leader no name", []string{"leader", nowhere}, "missing NAME"},
		{"user without password", []string{"lock", nowhere, "--user=u", "x", "--", "true"}, "--password"},
		{"cert without key", []string{"lock", nowhere, "--cert=c.pem", "x", "--", "true"}, "--key"},
		{"bad log level", []string{"lock", nowhere, "--log-level=loud", "x", "--", "true"}, "--log-level"},
		{"etcd bad listen", []string{"etcd", "--listen=2379"}, "--listen"},
		{"help of nothing", []string{"help", "nope"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := run(t.Context(), tc.args, nil, &out, &errb)
			stdout, stderr := out.String(), errb.String()
			if binary[tc.name] {
				code, stdout, stderr = runLeasekit(t, nil, tc.args...)
			}
			if code != exitUsage {
				t.Errorf("status %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q: want one line with %q", stderr, tc.want)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	inProcess := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := run(t.Context(), args, nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, _ := inProcess("help")
	if code != 0 || !strings.Contains(out, "leasekit lock [flags] NAME -- COMMAND") || !strings.Contains(out, "75 ") {
		t.Errorf("help: status %d, output %q", code, out)
	}
	code, out, _ = inProcess("help", "lock")
	if code != 0 || !strings.Contains(out, "LEASEKIT_TOKEN") || !strings.Contains(out, "--kill-after") {
		t.Errorf("help lock: status %d, output %q", code, out)
	}
	code, out, _ = inProcess("unlock", "-h")
	if code != 0 || !strings.Contains(out, "--force") {
		t.Errorf("unlock -h: status %d, output %q", code, out)
	}
	code, out, _ = runLeasekit(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "leasekit ") || !strings.Contains(out, "etcd-client v3.") {
		t.Errorf("version: status %d, output %q", code, out)
	}
}
