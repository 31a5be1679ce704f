// Package election provides leader election on etcd with leader duties.
package election
