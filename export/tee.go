package export

import (
	"context"

	"github.com/berthlog/berth/logs"
)

// Tee hands every batch to several sinks in order. Give the acknowledging
// role to one of them only (the OTLP sink when both are on): its
// acknowledgement is the one the checkpoints follow.
type Tee []logs.Sink

var _ logs.Sink = Tee(nil)

// Consume hands the batch to each sink in order and stops at the first error.
func (t Tee) Consume(ctx context.Context, b *logs.Batch) error {
	for _, s := range t {
		if err := s.Consume(ctx, b); err != nil {
			return err
		}
	}
	return nil
}
