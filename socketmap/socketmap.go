// Package socketmap serves Postfix's socketmap lookup protocol (socketmap_table(5)):
// netstring requests "NAME KEY" on a stream connection, several per connection, each
// answered by one netstring reply "OK data", "NOTFOUND ", "TEMP reason",
// "TIMEOUT reason" or "PERM reason".
//
// The package knows the protocol only; what a key means is the Handler's business.
package socketmap

import (
	"context"
	"time"
)

// Status is the first word of a reply (socketmap_table(5) "REPLY FORMAT").
type Status string

const (
	StatusOK       Status = "OK"       // the key was found; Data is the value
	StatusNotFound Status = "NOTFOUND" // the key is not in the map; Data is empty
	StatusTemp     Status = "TEMP"     // temporary failure; Postfix defers
	StatusTimeout  Status = "TIMEOUT"  // the lookup took too long; Postfix defers
	StatusPerm     Status = "PERM"     // permanent failure (bad request, unknown map)
)

// Reply answers one request. Data is the value for OK and the reason otherwise.
type Reply struct {
	Status Status
	Data   string
}

// Handler answers lookups of key in the map name. It must return within the ctx's
// deadline; the server answers TIMEOUT for it otherwise.
type Handler interface {
	Lookup(ctx context.Context, name, key string) Reply
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, name, key string) Reply

// Lookup calls f.
func (f HandlerFunc) Lookup(ctx context.Context, name, key string) Reply { return f(ctx, name, key) }

// Observer is told of every answered request, for metrics.
type Observer func(name string, status Status, took time.Duration)
