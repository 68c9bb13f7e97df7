package checkpoint

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/logs"
	"github.com/berthlog/berth/telemetry"
)

// testConfig is the checkpoint configuration of a state directory.
func testConfig(dir string) config.Checkpoints {
	return config.Checkpoints{StateDir: dir, CheckpointInterval: 5 * time.Second}
}

func cursorAt(ns int, hashes ...uint32) logs.Cursor {
	var c logs.Cursor
	c.Streams[0].Time = time.Unix(100, int64(ns)).UTC()
	c.Streams[0].Hashes = hashes
	c.Threshold = time.Unix(50, 0).UTC()
	return c
}

func TestSaveAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	s.Ack("a", cursorAt(1, 7, 8))
	s.Ack("b", cursorAt(2))
	s.Ack("a", cursorAt(3, 9)) // later acknowledgements replace earlier ones
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, fileName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", info.Mode().Perm())
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", d.Mode().Perm())
	}
	s2, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.Get("a")
	want := cursorAt(3, 9)
	if !ok || !got.Streams[0].Time.Equal(want.Streams[0].Time) || len(got.Streams[0].Hashes) != 1 || got.Streams[0].Hashes[0] != 9 || !got.Threshold.Equal(want.Threshold) {
		t.Fatalf("reopened a = %+v, want %+v", got, want)
	}
	s2.Forget("b")
	if err := s2.save(); err != nil {
		t.Fatal(err)
	}
	s3, _ := Open(testConfig(dir), telemetry.NopSettings())
	if ids := s3.IDs(); len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("after forget: %v", ids)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestCorruptFileIsSetAside(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":       "{not json",
		"wrong version": `{"version": 99, "containers": {}}`,
		"empty id":      `{"version": 1, "containers": {"": {}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, fileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			set := telemetry.NopSettings()
			set.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s, err := Open(testConfig(dir), set)
			if err != nil {
				t.Fatalf("a corrupt file must not stop berth: %v", err)
			}
			if len(s.IDs()) != 0 {
				t.Fatal("corrupt checkpoints were used")
			}
			if !strings.Contains(logs.String(), "checkpoint file unreadable") {
				t.Fatalf("not logged: %s", logs.String())
			}
			matches, _ := filepath.Glob(path + ".corrupt-*")
			if len(matches) != 1 {
				t.Fatalf("corrupt file not kept aside: %v", matches)
			}
			s.Ack("x", cursorAt(1))
			if err := s.save(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnwritableStateDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere: use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		_ = os.WriteFile(f, nil, 0o600)
		if _, err := Open(testConfig(filepath.Join(f, "state")), telemetry.NopSettings()); err == nil || !strings.Contains(err.Error(), "state_dir") {
			t.Fatalf("err = %v, want one naming state_dir", err)
		}
		return
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o500)
	if _, err := Open(testConfig(dir), telemetry.NopSettings()); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Fatalf("err = %v, want one naming state_dir", err)
	}
}

func TestSaveOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(testConfig(dir), telemetry.NopSettings())
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileName)); !os.IsNotExist(err) {
		t.Fatal("an unchanged store was written")
	}
}

// TestRunSavesEveryInterval: Run saves what changed every
// checkpoint_interval, exactly, and once more when its context ends.
func TestRunSavesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		cfg := testConfig(dir)
		s, err := Open(cfg, telemetry.NopSettings())
		if err != nil {
			t.Fatal(err)
		}
		saved := func() []string {
			t.Helper()
			s2, err := Open(cfg, telemetry.NopSettings())
			if err != nil {
				t.Fatal(err)
			}
			ids := s2.IDs()
			slices.Sort(ids)
			return ids
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Run(ctx)
		}()
		s.Ack("a", cursorAt(1))
		time.Sleep(cfg.CheckpointInterval - time.Nanosecond)
		synctest.Wait()
		if ids := saved(); len(ids) != 0 {
			t.Fatalf("saved %v before the interval", ids)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if ids := saved(); !slices.Equal(ids, []string{"a"}) {
			t.Fatalf("saved %v at the interval, want [a]", ids)
		}
		s.Ack("b", cursorAt(2))
		cancel()
		<-done
		if ids := saved(); !slices.Equal(ids, []string{"a", "b"}) {
			t.Fatalf("saved %v when Run ended, want [a b]", ids)
		}
	})
}

// TestSeed: a seeded position is saved and read back like an acknowledged
// one; it never replaces a checkpoint, and an acknowledgement replaces it.
func TestSeed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	quiet := logs.EndCursor(time.Unix(70, 0).UTC())
	s.Seed("quiet", quiet)
	s.Ack("busy", cursorAt(1))
	s.Seed("busy", quiet) // already has a checkpoint: kept
	s.Seed("later", quiet)
	s.Ack("later", cursorAt(2)) // acknowledged after its seed: replaced
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]logs.Cursor{"quiet": quiet, "busy": cursorAt(1), "later": cursorAt(2)} {
		got, ok := r.Get(id)
		if !ok || !got.Threshold.Equal(want.Threshold) || !got.Streams[0].Time.Equal(want.Streams[0].Time) {
			t.Errorf("%s after reopen: %+v (found %v), want %+v", id, got, ok, want)
		}
	}
}
