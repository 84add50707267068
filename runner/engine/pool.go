package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// pool keeps one live harness worker per environment, replacing a dead
// one on demand and registering every descriptor with it.
type pool struct {
	start harness.Starter
	log   *slog.Logger

	mu      sync.Mutex
	n       int
	workers map[string]harness.Worker
	descs   map[string][]*fnpb.ProcessBundleDescriptor
}

func (p *pool) addDescriptor(env string, d *fnpb.ProcessBundleDescriptor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.descs == nil {
		p.descs = map[string][]*fnpb.ProcessBundleDescriptor{}
	}
	p.descs[env] = append(p.descs[env], d)
}

func (p *pool) get(ctx context.Context, env string) (harness.Worker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.workers[env]; w != nil && w.Err() == nil {
		return w, nil
	}
	if p.start == nil {
		return nil, fmt.Errorf("no way to start workers for environment %q", env)
	}
	p.n++
	id := fmt.Sprintf("w%d", p.n)
	if old := p.workers[env]; old != nil {
		p.log.Warn("replacing dead worker", "env", env, "old", old.ID(), "new", id, "why", old.Err())
		old.Stop()
	}
	w, err := p.start(ctx, env, id)
	if err != nil {
		return nil, fmt.Errorf("starting worker for environment %q: %w", env, err)
	}
	if err := w.Register(ctx, p.descs[env]...); err != nil {
		w.Stop()
		return nil, err
	}
	p.workers[env] = w
	return w, nil
}

func (p *pool) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for env, w := range p.workers {
		w.Stop()
		delete(p.workers, env)
	}
}
