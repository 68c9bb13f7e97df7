package telemetry

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/procfs"
	"go.opentelemetry.io/otel/metric"
)

// Process reads the open file descriptors and the resident memory (bytes) of
// berth's process from /proc (Linux). When one of them cannot be read, err
// says so and that value is 0; the other is still set.
func Process() (fds int, rssBytes int64, err error) {
	p, err := procfs.Self()
	if err != nil {
		return 0, 0, fmt.Errorf("procfs: %w", err)
	}
	fds, fdsErr := openFDs(p)
	rssBytes, rssErr := residentBytes(p)
	return fds, rssBytes, errors.Join(fdsErr, rssErr)
}

func openFDs(p procfs.Proc) (int, error) {
	n, err := p.FileDescriptorsLen()
	if err != nil {
		return 0, fmt.Errorf("open file descriptors: %w", err)
	}
	return n, nil
}

func residentBytes(p procfs.Proc) (int64, error) {
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("resident memory: %w", err)
	}
	return int64(st.ResidentMemory()), nil
}

// registerProcessInstruments registers the gauges of berth's open file
// descriptors and resident memory, read from /proc when metrics are
// collected (nothing is observed where /proc cannot be read).
func registerProcessInstruments(meter metric.Meter) error {
	fds, err1 := meter.Int64ObservableGauge("process.unix.file_descriptor.count", metric.WithUnit("{file_descriptor}"),
		metric.WithDescription("Open file descriptors of the berth process."))
	rss, err2 := meter.Int64ObservableGauge("process.memory.usage", metric.WithUnit("By"),
		metric.WithDescription("Resident memory of the berth process."))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("process instruments: %w", err)
	}
	proc, procErr := procfs.Self()
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if procErr != nil {
			return nil
		}
		if n, err := openFDs(proc); err == nil {
			o.ObserveInt64(fds, int64(n))
		}
		if n, err := residentBytes(proc); err == nil {
			o.ObserveInt64(rss, n)
		}
		return nil
	}, fds, rss)
	if err != nil {
		return fmt.Errorf("process instruments: %w", err)
	}
	return nil
}
