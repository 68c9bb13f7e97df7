package checkpoint

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/logs"
)

func cursorAt(ns int, hashes ...uint32) logs.Cursor {
	var c logs.Cursor
	c.Streams[0].Time = time.Unix(100, int64(ns)).UTC()
	c.Streams[0].Hashes = hashes
	c.Threshold = time.Unix(50, 0).UTC()
	return c
}

func TestSaveAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Ack("a", cursorAt(1, 7, 8))
	s.Ack("b", cursorAt(2))
	s.Ack("a", cursorAt(3, 9)) // later acknowledgements replace earlier ones
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600", info.Mode().Perm())
	}
	if d, _ := os.Stat(dir); d.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", d.Mode().Perm())
	}
	s2, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.Get("a")
	want := cursorAt(3, 9)
	if !ok || !got.Streams[0].Time.Equal(want.Streams[0].Time) || len(got.Streams[0].Hashes) != 1 || got.Streams[0].Hashes[0] != 9 || !got.Threshold.Equal(want.Threshold) {
		t.Fatalf("reopened a = %+v, want %+v", got, want)
	}
	s2.Forget("b")
	if err := s2.Save(); err != nil {
		t.Fatal(err)
	}
	s3, _ := Open(dir, nil)
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
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			s, err := Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
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
			if err := s.Save(); err != nil {
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
		if _, err := Open(filepath.Join(f, "state"), nil); err == nil || !strings.Contains(err.Error(), "state_dir") {
			t.Fatalf("err = %v, want one naming state_dir", err)
		}
		return
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o500)
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Fatalf("err = %v, want one naming state_dir", err)
	}
}

func TestSaveOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, nil)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !os.IsNotExist(err) {
		t.Fatal("an unchanged store was written")
	}
}
