package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ApplyChild makes the live child match desired as the manager does, with c
// as its cache and its direct reader, and says what it did: "unchanged",
// "created" or "updated".
func ApplyChild(ctx context.Context, c client.Client, owner, desired client.Object) (string, error) {
	return ApplyChildFrom(ctx, c, c, owner, desired)
}

// ApplyChildFrom is ApplyChild with cache as the manager's cache and reader
// as its direct reader.
func ApplyChildFrom(ctx context.Context, cache client.Client, reader client.Reader, owner, desired client.Object) (string, error) {
	out, err := (&applier{client: cache, reader: reader}).apply(ctx, owner, desired)
	return [...]string{unchanged: "unchanged", created: "created", updated: "updated"}[out], err
}
