package telemetry

import (
	"context"

	"github.com/berthlog/berth/collectors"
)

// Tee hands every batch to several sinks in order. Give the acknowledging
// role to one of them only (the OTLP sink when both are on): its
// acknowledgement is the one the checkpoints follow.
type Tee []collectors.Sink

// Consume implements collectors.Sink.
func (t Tee) Consume(ctx context.Context, b *collectors.Batch) error {
	for _, s := range t {
		if err := s.Consume(ctx, b); err != nil {
			return err
		}
	}
	return nil
}
