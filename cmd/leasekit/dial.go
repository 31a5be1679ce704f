//go:build unix

package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/leasekit/leasekit/etcdclient"
)

// logOff is the --log-level that logs nothing, the default: leasekit
// reports what matters itself, on one line.
const logOff = "off"

// logLevel parses --log-level.
func logLevel(s string) (zapcore.Level, error) {
	var lvl zapcore.Level
	if s == logOff {
		return zapcore.FatalLevel, nil
	}
	if err := lvl.Set(s); err != nil || lvl > zapcore.ErrorLevel {
		return lvl, usagef("--log-level %q: want debug, info, warn, error or off", s)
	}
	return lvl, nil
}

// newLogger returns the logger of the libraries and the etcd client:
// one line per entry on stderr, at --log-level and above.
func newLogger(c *connFlags) *zap.Logger {
	if c.logLevel == logOff {
		return zap.NewNop()
	}
	lvl, _ := logLevel(c.logLevel) // checked by check
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Development = false
	cfg.DisableStacktrace = true
	cfg.DisableCaller = true
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	lg, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return lg
}

// clientConfig is the etcd client configuration the flags describe, on
// etcdclient's recommended settings (quick reconnects after a partition).
func clientConfig(c *connFlags, lg *zap.Logger) (clientv3.Config, error) {
	cfg := etcdclient.Config(c.endpointList()...)
	cfg.DialTimeout = c.dialTimeout
	cfg.Logger = lg
	cfg.Username, cfg.Password = c.credentials()
	if c.cacert != "" || c.cert != "" {
		tlsInfo := transport.TLSInfo{CertFile: c.cert, KeyFile: c.key, TrustedCAFile: c.cacert}
		tlsCfg, err := tlsInfo.ClientConfig()
		if err != nil {
			return cfg, usagef("TLS files: %v", err)
		}
		cfg.TLS = tlsCfg
	} else if anyHTTPS(cfg.Endpoints) {
		// https with the system's CAs, as etcdctl does.
		tlsCfg, err := (transport.TLSInfo{}).ClientConfig()
		if err != nil {
			return cfg, usagef("TLS: %v", err)
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

func anyHTTPS(eps []string) bool {
	for _, ep := range eps {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			return true
		}
	}
	return false
}

// dial connects to etcd and checks, within --dial-timeout, that etcd
// answers and lets this user read probe (a key prefix the command will
// use): an unreachable etcd or a refused login, certificate or
// permission is reported at once, not after a wait that never ends.
func dial(ctx context.Context, c *connFlags, lg *zap.Logger, probe string) (*clientv3.Client, error) {
	cfg, err := clientConfig(c, lg)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		// With a user, New logs in, within the dial timeout.
		return nil, describe(err, c, probe)
	}
	pctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, probe, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, describe(err, c, probe)
	}
	return cli, nil
}

// describe turns an error of etcd's into one line that says what to fix.
func describe(err error, c *connFlags, prefix string) error {
	if ee := rpctypes.Error(err); ee != nil {
		err = ee // a gRPC status as etcd's error, for errors.Is
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		hint := ""
		if c.cacert == "" && c.cert == "" {
			hint = "; if etcd serves TLS, give --cacert (and --cert, --key)"
		}
		return fmt.Errorf("etcd at %s did not answer within --dial-timeout %v%s", c.endpoints, c.dialTimeout, hint)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("etcd refused: %s lacks the permission on %s (permission denied)", c.who(), prefix)
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("etcd refused the login of %s: wrong user or password", c.who())
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return fmt.Errorf("etcd requires a login: give --user and --password, or a client certificate (%v)", err)
	}
	return fmt.Errorf("etcd at %s: %v", c.endpoints, err)
}

// who names the etcd user the flags log in as.
func (c *connFlags) who() string {
	user, _ := c.credentials()
	switch {
	case user != "":
		return fmt.Sprintf("user %q", user)
	case c.cert != "":
		return fmt.Sprintf("user %q (the common name of --cert)", certCN(c.cert))
	}
	return "a client without a user"
}

// certCN returns the common name of the certificate in the PEM file, which
// etcd takes as the user when no password is given.
func certCN(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "?"
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return "?"
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "?"
	}
	return cert.Subject.CommonName
}
