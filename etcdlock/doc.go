// Package etcdlock provides fair, fenced distributed locks on etcd.
package etcdlock
