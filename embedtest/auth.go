package embedtest

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RootPassword is the password EnableAuth gives etcd's root user.
const RootPassword = "embedtest-root"

// ErrAuthOff is returned by AddUser before EnableAuth.
var ErrAuthOff = errors.New("embedtest: auth is off; call EnableAuth first")

// A Grant is a permission on every key under Prefix, for AddUser. Perm is
// clientv3.PermissionType(clientv3.PermRead), PermWrite or PermReadWrite.
type Grant struct {
	Prefix string
	Perm   clientv3.PermissionType
}

// EnableAuth turns etcd authentication on through the client API, as an
// operator would: it adds the root role and the root user, whose password
// is RootPassword, and enables auth. It returns a client logged in as
// root, closed with the cluster. From then on Client, and every client
// without credentials, is refused whatever needs a permission; the
// cluster's own calls (Rejoin's membership changes) log in as root.
func (c *Cluster) EnableAuth(ctx context.Context) (*clientv3.Client, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	cli := c.Client()
	if _, err := cli.RoleAdd(ctx, "root"); err != nil {
		return nil, fmt.Errorf("embedtest: add root role: %w", err)
	}
	if _, err := cli.UserAdd(ctx, "root", RootPassword); err != nil {
		return nil, fmt.Errorf("embedtest: add root user: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		return nil, fmt.Errorf("embedtest: grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return nil, fmt.Errorf("embedtest: enable auth: %w", err)
	}
	root, err := c.NewClient(clientv3.Config{Username: "root", Password: RootPassword})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.root = root
	c.mu.Unlock()
	return root, nil
}

// AddUser adds the user name, whose password is name + "-password", with
// a role also named name that holds grants, and returns a client logged
// in as that user, closed with the cluster. With no grants the user can do
// nothing that needs a key permission. Under WithTLS, NewCertClient(name)
// is the same user known by its certificate alone.
func (c *Cluster) AddUser(ctx context.Context, name string, grants ...Grant) (*clientv3.Client, error) {
	c.mu.Lock()
	root := c.root
	c.mu.Unlock()
	if root == nil {
		return nil, ErrAuthOff
	}
	password := name + "-password"
	if _, err := root.UserAdd(ctx, name, password); err != nil {
		return nil, fmt.Errorf("embedtest: add user %s: %w", name, err)
	}
	if len(grants) > 0 {
		if _, err := root.RoleAdd(ctx, name); err != nil {
			return nil, fmt.Errorf("embedtest: add role %s: %w", name, err)
		}
		for _, g := range grants {
			if _, err := root.RoleGrantPermission(ctx, name, g.Prefix, clientv3.GetPrefixRangeEnd(g.Prefix), g.Perm); err != nil {
				return nil, fmt.Errorf("embedtest: grant %s on %s: %w", name, g.Prefix, err)
			}
		}
		if _, err := root.UserGrantRole(ctx, name, name); err != nil {
			return nil, fmt.Errorf("embedtest: grant role %s: %w", name, err)
		}
	}
	return c.NewClient(clientv3.Config{Username: name, Password: password})
}

// NewCertClient returns a client whose TLS client certificate has the
// common name cn (see ClientCert), which etcd's auth takes as the user
// cn, logged in without a password. The cluster must run WithTLS. Close
// closes it too.
func (c *Cluster) NewCertClient(cn string) (*clientv3.Client, error) {
	files, err := c.ClientCert(cn)
	if err != nil {
		return nil, err
	}
	cfg, err := files.ClientConfig()
	if err != nil {
		return nil, err
	}
	return c.NewClient(clientv3.Config{TLS: cfg})
}
