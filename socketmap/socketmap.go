// Package socketmap serves Postfix's socketmap lookup protocol (socketmap_table(5)):
// netstring requests "NAME KEY" on a stream connection, several per connection, each
// answered by one netstring reply "OK data", "NOTFOUND ", "TEMP reason",
// "TIMEOUT reason" or "PERM reason".
//
// The package knows the protocol only; what a key means is the Handler's business.
// Server serves it as Postfix's socketmap client (src/util/dict_sockmap.c) speaks it,
// within Postfix's limits, and keeps what a client sends from reaching the Handler unless
// it is a well-formed request; Client speaks it as dict_sockmap does, for tests and tools.
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

// CachedHandler is a Handler that can often answer at once, from memory. The server calls
// LookupCached first, with no budget; only when it returns false does it call Lookup,
// with the budget. A cached lookup so costs no context and no timer. LookupCached must
// not block: no I/O, no waiting for a lookup in flight.
type CachedHandler interface {
	Handler
	LookupCached(name, key string) (Reply, bool)
}
