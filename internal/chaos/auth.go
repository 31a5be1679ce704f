package chaos

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/leasekit/leasekit/embedtest"
)

// RootPassword is the password EnableAuth gives etcd's root user.
const RootPassword = "chaos-root"

// Auth is a cluster with etcd authentication on, and a root client to
// manage its users and roles with.
type Auth struct {
	c    *embedtest.Cluster
	Root *clientv3.Client
}

// EnableAuth turns etcd authentication on through the client API, as an
// operator would: it creates the root role and user, then enables auth.
// From then on cli, if it has no credentials, is refused everything.
func EnableAuth(ctx context.Context, c *embedtest.Cluster, cli *clientv3.Client) (*Auth, error) {
	if _, err := cli.RoleAdd(ctx, "root"); err != nil {
		return nil, fmt.Errorf("add root role: %w", err)
	}
	if _, err := cli.UserAdd(ctx, "root", RootPassword); err != nil {
		return nil, fmt.Errorf("add root user: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		return nil, fmt.Errorf("grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return nil, fmt.Errorf("enable auth: %w", err)
	}
	root, err := c.NewClient(clientv3.Config{Username: "root", Password: RootPassword})
	if err != nil {
		return nil, err
	}
	return &Auth{c: c, Root: root}, nil
}

// Grant is a permission on every key under a prefix.
type Grant struct {
	Prefix string
	Perm   clientv3.PermissionType // clientv3.PermRead, PermWrite or PermReadWrite
}

// User creates a user with a role of its own that holds grants, and
// returns a client logged in as that user. With no grants, the user can
// do nothing that needs a key permission.
func (a *Auth) User(ctx context.Context, name string, grants ...Grant) (*clientv3.Client, error) {
	password := name + "-password"
	if _, err := a.Root.UserAdd(ctx, name, password); err != nil {
		return nil, fmt.Errorf("add user %s: %w", name, err)
	}
	if len(grants) > 0 {
		role := name + "-role"
		if _, err := a.Root.RoleAdd(ctx, role); err != nil {
			return nil, fmt.Errorf("add role %s: %w", role, err)
		}
		for _, g := range grants {
			if _, err := a.Root.RoleGrantPermission(ctx, role, g.Prefix, clientv3.GetPrefixRangeEnd(g.Prefix), g.Perm); err != nil {
				return nil, fmt.Errorf("grant %s on %s: %w", role, g.Prefix, err)
			}
		}
		if _, err := a.Root.UserGrantRole(ctx, name, role); err != nil {
			return nil, fmt.Errorf("grant role %s to %s: %w", role, name, err)
		}
	}
	return a.c.NewClient(clientv3.Config{Username: name, Password: password})
}

// Revoke takes back the grant on prefix from the role User made for name.
func (a *Auth) Revoke(ctx context.Context, name, prefix string) error {
	_, err := a.Root.RoleRevokePermission(ctx, name+"-role", prefix, clientv3.GetPrefixRangeEnd(prefix))
	return err
}

// CertClient returns a client that authenticates as the user name by its
// TLS client certificate alone, without a password; the cluster must have
// been started WithTLS, and the user made with User.
func (a *Auth) CertClient(name string) (*clientv3.Client, error) {
	files, err := a.c.ClientCert(name)
	if err != nil {
		return nil, err
	}
	cfg, err := files.ClientConfig()
	if err != nil {
		return nil, err
	}
	return a.c.NewClient(clientv3.Config{TLS: cfg})
}
