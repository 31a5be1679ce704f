package embedtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// WithTLS makes the members serve clients over TLS only, and require a
// client certificate, as a production etcd with --client-cert-auth does.
// Start generates the certificates in-process: a CA, a server
// certificate for 127.0.0.1, ::1 and localhost, and a client
// certificate. Endpoints and ClientURL then give https URLs, and Client,
// NewClient and the proxies' clients use the CA and the client
// certificate unless clientv3.Config.TLS says otherwise. TLSFiles gives the
// same as PEM files, for processes such as etcdctl; ClientCert issues
// more client certificates.
//
// With etcd auth on, a client that sends no password is the user named
// by its certificate's common name ("embedtest-client" for the default
// one); a password login wins over the certificate.
func WithTLS() Option {
	return optionFunc(func(c *config) { c.tls = true })
}

// TLSFiles names the PEM files of a client certificate, its key and the
// CA that signed it and the members' certificates: the --cacert, --cert
// and --key of etcdctl and leasekit.
type TLSFiles struct {
	// CA is the certificate of the CA that signed every certificate of
	// the cluster.
	CA string
	// Cert is a client certificate.
	Cert string
	// Key is Cert's private key, unencrypted.
	Key string
}

// ClientConfig loads the files into a tls.Config for clientv3.Config.TLS.
func (f TLSFiles) ClientConfig() (*tls.Config, error) {
	cfg, err := (transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("embedtest: TLS files: %w", err)
	}
	return cfg, nil
}

// TLSFiles returns the CA and the default client certificate as files,
// which live until Close. Without WithTLS it returns the zero TLSFiles.
func (c *Cluster) TLSFiles() TLSFiles {
	if c.certs == nil {
		return TLSFiles{}
	}
	return c.certs.client
}

// ClientCert issues a client certificate with the common name cn, signed
// by the cluster's CA, and writes it to files that live until Close. With
// etcd auth on, a client using it without a password is the user cn. It
// returns an error wrapping ErrInvalidOption without WithTLS.
func (c *Cluster) ClientCert(cn string) (TLSFiles, error) {
	if err := c.checkOpen(); err != nil {
		return TLSFiles{}, err
	}
	if c.certs == nil {
		return TLSFiles{}, fmt.Errorf("%w: ClientCert needs WithTLS", ErrInvalidOption)
	}
	return c.certs.issueClient(cn)
}

// certs is a cluster's CA and the files issued from it.
type certs struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	server TLSFiles
	client TLSFiles
	// clientTLS is client loaded, for the cluster's own clients.
	clientTLS *tls.Config

	mu     sync.Mutex
	issued int
}

// newCerts generates a CA, a server and a client certificate under dir.
func newCerts(dir string) (*certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedtest: TLS dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("embedtest: CA key: %w", err)
	}
	tmpl := certTemplate("embedtest CA")
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("embedtest: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("embedtest: CA certificate: %w", err)
	}
	cs := &certs{dir: dir, caCert: ca, caKey: key}
	caFile := filepath.Join(dir, "ca.crt")
	if err := writePEM(caFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}

	srv := certTemplate("embedtest server")
	srv.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	srv.DNSNames = []string{"localhost"}
	// etcd may dial itself with its server certificate.
	srv.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if cs.server, err = cs.issue(srv, "server"); err != nil {
		return nil, err
	}
	if cs.client, err = cs.issueClient("embedtest-client"); err != nil {
		return nil, err
	}
	if cs.clientTLS, err = cs.client.ClientConfig(); err != nil {
		return nil, err
	}
	return cs, nil
}

func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"leasekit embedtest"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (cs *certs) issueClient(cn string) (TLSFiles, error) {
	tmpl := certTemplate(cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cs.mu.Lock()
	cs.issued++
	base := fmt.Sprintf("client-%d", cs.issued)
	cs.mu.Unlock()
	return cs.issue(tmpl, base)
}

// issue signs tmpl with a new key and writes base.crt and base.key.
func (cs *certs) issue(tmpl *x509.Certificate, base string) (TLSFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("embedtest: key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cs.caCert, &key.PublicKey, cs.caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("embedtest: certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("embedtest: key: %w", err)
	}
	f := TLSFiles{
		CA:   filepath.Join(cs.dir, "ca.crt"),
		Cert: filepath.Join(cs.dir, base+".crt"),
		Key:  filepath.Join(cs.dir, base+".key"),
	}
	if err := writePEM(f.Cert, "CERTIFICATE", der); err != nil {
		return TLSFiles{}, err
	}
	if err := writePEM(f.Key, "EC PRIVATE KEY", keyDER); err != nil {
		return TLSFiles{}, err
	}
	return f, nil
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("embedtest: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// clientScheme is the scheme of the members' client URLs.
func (c *Cluster) clientScheme() string {
	if c.cfg.tls {
		return "https"
	}
	return "http"
}

// clientTLS is the TLS configuration of the cluster's own clients: nil
// without WithTLS.
func (c *Cluster) clientTLS() *tls.Config {
	if c.certs == nil {
		return nil
	}
	return c.certs.clientTLS.Clone()
}

// serveTLS makes a member's config serve clients over TLS when the
// cluster has certificates.
func (c *Cluster) serveTLS(ec *embed.Config) {
	if c.certs == nil {
		return
	}
	ec.ClientTLSInfo = transport.TLSInfo{
		CertFile:       c.certs.server.Cert,
		KeyFile:        c.certs.server.Key,
		TrustedCAFile:  c.certs.server.CA,
		ClientCertAuth: true,
	}
}
