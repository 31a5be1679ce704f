// Package ratelimit provides rate limits shared by many instances through
// etcd.
package ratelimit
