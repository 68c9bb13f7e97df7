package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	s.Track("a")
	s.Track("b")
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
			s.Track("x")
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
		s.Track("a")
		s.Track("b")
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

// TestLateAckAfterForget: an acknowledgement that arrives after its container
// was forgotten (its last batch was in flight when it was removed) does not
// bring its checkpoint back, in memory or in the saved file; a container
// with a checkpoint from the file keeps taking acknowledgements, and an
// untracked one takes none.
func TestLateAckAfterForget(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	s.Track("gone")
	s.Track("kept")
	s.Ack("gone", cursorAt(1))
	s.Ack("kept", cursorAt(1))
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	s.Forget("gone")
	s.Ack("gone", cursorAt(2)) // late: the sink was still exporting it
	s.Ack("never-tracked", cursorAt(2))
	if _, ok := s.Get("gone"); ok {
		t.Fatal("a late acknowledgement brought a forgotten container's checkpoint back")
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(testConfig(dir), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	if ids := s2.IDs(); !slices.Equal(ids, []string{"kept"}) {
		t.Fatalf("saved %v, want [kept]", ids)
	}
	// After a restart, a checkpointed container takes acknowledgements
	// before anyone tracks it again.
	s2.Ack("kept", cursorAt(3))
	if c, _ := s2.Get("kept"); !c.Streams[0].Time.Equal(cursorAt(3).Streams[0].Time) {
		t.Fatalf("kept at %v, want the new acknowledgement", c.Streams[0].Time)
	}
}

// TestForgetRacesAck: acknowledgements racing the container's Forget leave
// no checkpoint behind once Forget returned and the acks finished.
func TestForgetRacesAck(t *testing.T) {
	s, err := Open(testConfig(t.TempDir()), telemetry.NopSettings())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		id := fmt.Sprintf("c%d", i)
		s.Track(id)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 20 {
				s.Ack(id, cursorAt(n))
			}
		}()
		s.Forget(id)
		wg.Wait()
		if _, ok := s.Get(id); ok {
			t.Fatalf("%s: an acknowledgement after Forget kept its checkpoint", id)
		}
	}
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
	s.Track("busy")
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
