package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Check is the readiness probe of one dependency of a server: a store, the bus.
type Check struct {
	Name  string
	Ready func(context.Context) error
}

// ReadyAll combines checks into a Config.Ready that fails when any of them fails, naming
// each failing dependency. A process is only as ready as the least ready thing it writes
// to, so every store and bus a service uses belongs here. The checks run concurrently, so
// one hung dependency does not hide the others.
func ReadyAll(checks ...Check) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() {
				if err := c.Ready(ctx); err != nil {
					errs[i] = fmt.Errorf("%s: %w", c.Name, err)
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}
