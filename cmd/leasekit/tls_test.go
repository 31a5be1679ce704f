//go:build unix

package main

import (
	"strings"
	"testing"

	"github.com/leasekit/leasekit/embedtest"
	"github.com/leasekit/leasekit/internal/testkit"
)

// TestTLSAndAuth runs leasekit against an etcd that serves TLS only,
// requires client certificates and has auth on: by certificate alone, by
// password, and from ETCDCTL_* variables; and checks that each kind of
// refusal exits 69 with one line that says what is wrong.
func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	c := embedtest.New(t, embedtest.WithTLS())
	kids := newChildren(t)
	testkit.AuthUsers(t, c) // app, reader and nobody
	appCert, err := c.ClientCert("app")
	if err != nil {
		t.Fatal(err)
	}
	nobodyCert, err := c.ClientCert("nobody")
	if err != nil {
		t.Fatal(err)
	}
	files := c.TLSFiles() // CN embedtest-client: no such user
	tlsFlags := func(f embedtest.TLSFiles) []string {
		return []string{ep(c.Endpoints()...), "--cacert=" + f.CA, "--cert=" + f.Cert, "--key=" + f.Key}
	}
	lock := func(flags []string, tag string) []string {
		return cmdline(append(append([]string{"lock"}, flags...), "tls"), childArgs(tag, "exit", "0"))
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"client certificate", nil, lock(tlsFlags(appCert), "cert")},
		{"password", nil, lock(append(tlsFlags(files), "--user=app", "--password=app-password"), "password")},
		{"user:password", nil, lock(append(tlsFlags(files), "--user=app:app-password"), "colon")},
		{"ETCDCTL variables", []string{
			"ETCDCTL_ENDPOINTS=" + strings.Join(c.Endpoints(), ","), "ETCDCTL_CACERT=" + files.CA,
			"ETCDCTL_CERT=" + appCert.Cert, "ETCDCTL_KEY=" + appCert.Key,
		}, cmdline([]string{"lock", "tls"}, childArgs("env", "exit", "0"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runLeasekitEnv(t, kids, tc.env, tc.args...)
			if code != 0 {
				t.Fatalf("status %d; stderr %q", code, stderr)
			}
		})
	}
	code, out, stderr := runLeasekit(t, nil, append(append([]string{"inspect"}, tlsFlags(appCert)...), "--json", "tls")...)
	if code != 0 || !strings.Contains(out, `"prefix": "/leasekit/lock/tls/"`) {
		t.Fatalf("inspect over TLS: status %d, %q, stderr %q", code, out, stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", append([]string{ep(c.Endpoints()...), "--cacert=" + files.CA, "--dial-timeout=1s"}, "--user=app:app-password"), "did not answer"},
		{"no TLS", []string{ep(strings.ReplaceAll(c.Endpoints()[0], "https://", "")), "--dial-timeout=1s"}, "--cacert"},
		{"wrong password", append(tlsFlags(files), "--user=app:wrong"), "wrong user or password"},
		{"no rights", tlsFlags(nobodyCert), "permission denied"},
		{"read only", append(tlsFlags(files), "--user=reader:reader-password"), "permission denied"},
		{"unknown user", tlsFlags(files), "embedtest-client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runLeasekit(t, kids, lock(tc.args, "refused")...)
			if code != exitEtcd || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("status %d, want %d; stderr %q, want one line with %q", code, exitEtcd, stderr, tc.want)
			}
		})
	}
	// elect's campaign writes where its probe only read.
	code, _, stderr = runLeasekit(t, kids, cmdline(append(append([]string{"elect"}, tlsFlags(files)...), "--user=reader:reader-password", "tls"), childArgs("refused", "exit", "0"))...)
	if code != exitEtcd || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("elect as a reader: status %d; stderr %q", code, stderr)
	}
	if kids.seen("start", "refused") {
		t.Fatal("a refused leasekit ran its command")
	}
}
