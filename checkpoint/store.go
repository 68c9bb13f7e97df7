// Package checkpoint keeps each container's delivered position and persists
// it in the state directory, so that berth resumes where the backend's
// acknowledgements left off: a graceful restart loses and repeats nothing, a
// crash repeats at most what was in flight.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// fileName is the checkpoint file inside the state directory.
const fileName = "checkpoints.json"

// fileVersion is the format of the file; a file of another version is set
// aside like a corrupt one.
const fileVersion = 1

// Store holds the acknowledged cursor of every container. It is safe for
// concurrent use: sinks acknowledge from their goroutines, the manager reads
// and forgets from its own.
type Store struct {
	path     string
	interval time.Duration // how often Run saves
	log      *slog.Logger

	mu      sync.Mutex
	cursors map[string]logs.Cursor
	// tracked holds the containers berth knows to exist (Track) and has not
	// forgotten: only theirs, and those with a checkpoint, are kept.
	tracked map[string]struct{}
	dirty   bool
}

var _ logs.Acker = (*Store)(nil)

// Open prepares the state directory cfg.StateDir (created 0700 if missing)
// and loads the checkpoint file; Run saves it every cfg.CheckpointInterval.
// A missing file is an empty store. An unreadable or corrupt file is logged
// with set.Logger, renamed aside (kept for inspection) and replaced by an
// empty store: berth keeps running and starts those containers from
// initial_position. Only a state directory berth cannot create or write is an
// error.
func Open(cfg config.Checkpoints, set telemetry.Settings) (*Store, error) {
	dir, log := cfg.StateDir, set.Logger
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, fileName), interval: cfg.CheckpointInterval, log: log, cursors: map[string]logs.Cursor{}, tracked: map[string]struct{}{}}
	// Prove now that checkpoints can be written, rather than at the first save.
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("state_dir %s is not writable: %w", dir, err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())

	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err == nil:
		cursors, perr := decode(data)
		if perr == nil {
			s.cursors = cursors
			return s, nil
		}
		err = perr
	}
	aside := fmt.Sprintf("%s.corrupt-%s", s.path, time.Now().UTC().Format("20060102T150405Z"))
	rerr := os.Rename(s.path, aside)
	log.Warn("checkpoint file unreadable; starting without checkpoints (containers start from initial_position)",
		"path", s.path, "err", err, "kept_as", aside, "rename_err", rerr)
	return s, nil
}

// Get returns a container's checkpoint.
func (s *Store) Get(id string) (logs.Cursor, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cursors[id]
	return c, ok
}

// IDs returns the containers that have a checkpoint.
func (s *Store) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.cursors))
	for id := range s.cursors {
		ids = append(ids, id)
	}
	return ids
}

// Track says that a container exists: its acknowledgements are kept from
// now on, until Forget. Call it before any of its records can be
// acknowledged (the manager does when it learns of the container).
func (s *Store) Track(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracked[id] = struct{}{}
}

// Ack records that a container's records up to cursor were delivered. The
// acknowledgement of a container that is neither tracked nor checkpointed is
// ignored: it is one that arrived after the container was forgotten (its
// last batches were still in flight when it was removed), and it must not
// bring its checkpoint back.
func (s *Store) Ack(id string, cursor logs.Cursor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cursors[id]; !ok {
		if _, ok := s.tracked[id]; !ok {
			return
		}
	}
	s.cursors[id] = cursor
	s.dirty = true
}

// Seed records where berth starts reading a container that has no
// checkpoint yet, so that the position survives a restart even if nothing of
// the container is ever acknowledged (a quiet container that exists when
// berth first starts at the end of its log: the lines it writes while berth
// is stopped are read after the restart). An existing checkpoint is kept; a
// later Ack replaces the seed.
func (s *Store) Seed(id string, cursor logs.Cursor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cursors[id]; !ok {
		s.cursors[id] = cursor.Clone()
		s.dirty = true
	}
}

// Forget drops a removed container's checkpoint, and ignores its
// acknowledgements from now on. Docker never reuses a container's id.
func (s *Store) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tracked, id)
	if _, ok := s.cursors[id]; ok {
		delete(s.cursors, id)
		s.dirty = true
	}
}

// save writes the checkpoints if they changed: to a temporary file, synced,
// then renamed over the old one, so a crash leaves the old file or the new
// one, never a torn one.
func (s *Store) save() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	data, err := encode(s.cursors)
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path, data); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("save checkpoints: %w", err)
	}
	return nil
}

// Run saves the checkpoints, if they changed, every checkpoint_interval
// until ctx ends, then once more.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := s.save(); err != nil {
				s.log.Error("cannot save checkpoints", "err", err)
			}
		case <-ctx.Done():
			if err := s.save(); err != nil {
				s.log.Error("cannot save checkpoints", "err", err)
			}
			return
		}
	}
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".checkpoints-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// The file format: stable field names, independent of Go's struct layout.
type fileV1 struct {
	Version    int                   `json:"version"`
	Containers map[string]cursorJSON `json:"containers"`
}

type cursorJSON struct {
	Threshold time.Time    `json:"threshold,omitzero"`
	Stdout    streamCursor `json:"stdout,omitzero"`
	Stderr    streamCursor `json:"stderr,omitzero"`
}

type streamCursor struct {
	Time   time.Time `json:"time,omitzero"`
	Hashes []uint32  `json:"hashes,omitempty"`
}

func encode(cursors map[string]logs.Cursor) ([]byte, error) {
	f := fileV1{Version: fileVersion, Containers: make(map[string]cursorJSON, len(cursors))}
	for id, c := range cursors {
		f.Containers[id] = cursorJSON{
			Threshold: c.Threshold,
			Stdout:    streamCursor{c.Streams[0].Time, c.Streams[0].Hashes},
			Stderr:    streamCursor{c.Streams[1].Time, c.Streams[1].Hashes},
		}
	}
	return json.MarshalIndent(f, "", " ")
}

func decode(data []byte) (map[string]logs.Cursor, error) {
	var f fileV1
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("version %d, want %d", f.Version, fileVersion)
	}
	out := make(map[string]logs.Cursor, len(f.Containers))
	for id, cj := range f.Containers {
		if id == "" {
			return nil, errors.New("a checkpoint without a container id")
		}
		var c logs.Cursor
		c.Threshold = cj.Threshold
		c.Streams[0].Time, c.Streams[0].Hashes = cj.Stdout.Time, cj.Stdout.Hashes
		c.Streams[1].Time, c.Streams[1].Hashes = cj.Stderr.Time, cj.Stderr.Hashes
		out[id] = c
	}
	return out, nil
}
