//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berthlog/berth/e2e/internal/lines"
)

// iostream maps loggen's stream label to log.iostream.
func iostream(label string) string {
	if label == lines.Err {
		return "stderr"
	}
	return "stdout"
}

// seqGroup is one sequence of a generator: one run, one stream label (or ""
// when stdout and stderr share one sequence).
type seqGroup struct{ Run, Stream string }

// missingDups returns the sequence numbers in [0,n) that are missing, and
// those seen more than once (with n <= 0: [0, max]).
func missingDups(seqs []int, n int) (missing []int, dups map[int]int) {
	hi := n
	for _, s := range seqs {
		if s+1 > hi && n <= 0 {
			hi = s + 1
		}
	}
	count := make([]int, hi)
	dups = map[int]int{}
	var extra []int
	for _, s := range seqs {
		if s >= hi {
			extra = append(extra, s)
			continue
		}
		count[s]++
	}
	for s, c := range count {
		if c == 0 {
			missing = append(missing, s)
		}
		if c > 1 {
			dups[s] = c
		}
	}
	for _, s := range extra {
		dups[s]++ // beyond the expected range: counted as unexpected
	}
	return missing, dups
}

// ranges prints a sorted list of ints as "1-5, 9".
func ranges(xs []int) string {
	if len(xs) == 0 {
		return "none"
	}
	sort.Ints(xs)
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(xs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		}
		i = j + 1
		if len(parts) >= 20 {
			parts = append(parts, "...")
			break
		}
	}
	return strings.Join(parts, ", ")
}

func dupString(d map[int]int) string {
	if len(d) == 0 {
		return "none"
	}
	keys := make([]int, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for i, k := range keys {
		if i == 20 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%d(x%d)", k, d[k]))
	}
	return fmt.Sprintf("%d: %s", len(d), strings.Join(parts, ", "))
}

// checkRecordMeta checks the resource of every record of container c.
func checkRecordMeta(t *testing.T, c *Ctr, recs []Record) {
	t.Helper()
	bad := 0
	for _, r := range recs {
		var errs []string
		if got := r.res("container.id"); got != c.ID {
			errs = append(errs, fmt.Sprintf("container.id %q", got))
		}
		if got := r.res("container.name"); got != c.Name {
			errs = append(errs, fmt.Sprintf("container.name %q", got))
		}
		if got := r.res("container.image.name"); got != imageRepo {
			errs = append(errs, fmt.Sprintf("container.image.name %q (want %q)", got, imageRepo))
		}
		if tags, _ := r.Resource["container.image.tags"].([]any); len(tags) != 1 || tags[0] != "latest" {
			errs = append(errs, fmt.Sprintf("container.image.tags %v (want [latest])", r.Resource["container.image.tags"]))
		}
		if got := r.res("container.runtime"); got != "docker" {
			errs = append(errs, fmt.Sprintf("container.runtime %q", got))
		}
		if got := r.res("container.runtime.name"); got != "docker" {
			errs = append(errs, fmt.Sprintf("container.runtime.name %q", got))
		}
		if got := r.res("service.name"); got != c.Name {
			errs = append(errs, fmt.Sprintf("service.name %q (want the container name)", got))
		}
		if r.res("host.name") == "" {
			errs = append(errs, "no host.name")
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
			errs = append(errs, fmt.Sprintf("timestamp %q: %v", r.Timestamp, err))
		}
		if _, err := time.Parse(time.RFC3339Nano, r.ObservedTimestamp); err != nil {
			errs = append(errs, fmt.Sprintf("observed_timestamp %q: %v", r.ObservedTimestamp, err))
		}
		if s := r.Stream(); s != "stdout" && s != "stderr" {
			errs = append(errs, fmt.Sprintf("log.iostream %q", s))
		}
		if len(errs) > 0 {
			bad++
			if bad <= 5 {
				t.Errorf("%s: record at stdout line %d: %s", c.Name, r.Line, strings.Join(errs, "; "))
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d records with a wrong resource or attribute in all", c.Name, bad)
	}
}

// checkShared checks the records of a generator run with `-n n
// -stderr-every every`: one run, one sequence shared by stdout and stderr,
// each of 0..n-1 exactly once, on the right stream.
func checkShared(t *testing.T, c *Ctr, recs []Record, n, every int) {
	t.Helper()
	checkSharedSeqs(t, c, recs, n, every)
	checkRecordMeta(t, c, recs)
}

// checkSharedSeqs is checkShared without the resource checks.
func checkSharedSeqs(t *testing.T, c *Ctr, recs []Record, n, every int) {
	t.Helper()
	runs := map[string][]int{}
	wrongStream, unparsed := 0, 0
	for _, r := range recs {
		p, ok := lines.Parse(r.Body)
		if !ok {
			unparsed++
			if unparsed <= 3 {
				t.Errorf("%s: record at line %d has no sequence: %.120q", c.Name, r.Line, r.Body)
			}
			continue
		}
		runs[p.Run] = append(runs[p.Run], p.Seq)
		wantLabel := lines.Out
		if every > 0 && (p.Seq+1)%every == 0 {
			wantLabel = lines.Err
		}
		if p.Stream != wantLabel || r.Stream() != iostream(wantLabel) {
			wrongStream++
			if wrongStream <= 3 {
				t.Errorf("%s: seq %d: label %s, log.iostream %q; want %s/%s", c.Name, p.Seq, p.Stream, r.Stream(), wantLabel, iostream(wantLabel))
			}
		}
	}
	if len(runs) != 1 {
		t.Errorf("%s: records from %d runs, want 1", c.Name, len(runs))
	}
	for run, seqs := range runs {
		missing, dups := missingDups(seqs, n)
		if len(missing) > 0 || len(dups) > 0 {
			t.Errorf("%s run %s: %d records for %d lines; missing %d: %s; duplicated %s",
				c.Name, run, len(seqs), n, len(missing), ranges(missing), dupString(dups))
		}
	}
}

// checkPerStream checks records whose stream label has its own sequence per
// run: for every (run, label) the sequence is 0..k-1 exactly once, in
// order, on the stream the label names. want[label] > 0 also requires
// k == want[label] for every run. It returns the groups found.
func checkPerStream(t *testing.T, c *Ctr, recs []Record, want map[string]int) map[seqGroup][]int {
	t.Helper()
	groups := map[seqGroup][]int{}
	wrongStream, unparsed, disorder := 0, 0, 0
	for _, r := range recs {
		body, err := r.BodyBytes()
		if err != nil {
			t.Errorf("%s: line %d: bad base64 body: %v", c.Name, r.Line, err)
			continue
		}
		p, ok := lines.Parse(string(body))
		if !ok {
			unparsed++
			if unparsed <= 3 {
				t.Errorf("%s: record at line %d has no sequence: %.120q", c.Name, r.Line, body)
			}
			continue
		}
		g := seqGroup{p.Run, p.Stream}
		if prev := groups[g]; len(prev) > 0 && prev[len(prev)-1] > p.Seq {
			disorder++
			if disorder <= 3 {
				t.Errorf("%s run %s stream %s: seq %d after seq %d (out of order)", c.Name, p.Run, p.Stream, p.Seq, prev[len(prev)-1])
			}
		}
		groups[g] = append(groups[g], p.Seq)
		if r.Stream() != iostream(p.Stream) {
			wrongStream++
			if wrongStream <= 3 {
				t.Errorf("%s: %s seq %d arrived with log.iostream %q", c.Name, p.Stream, p.Seq, r.Stream())
			}
		}
	}
	for g, seqs := range groups {
		n := want[g.Stream]
		missing, dups := missingDups(seqs, n)
		if len(missing) > 0 || len(dups) > 0 {
			t.Errorf("%s run %s stream %s: %d records (want %d); missing %d: %s; duplicated %s",
				c.Name, g.Run, g.Stream, len(seqs), n, len(missing), ranges(missing), dupString(dups))
		}
	}
	if unparsed > 3 {
		t.Errorf("%s: %d records without a sequence in all", c.Name, unparsed)
	}
	return groups
}

// compareWithDocker checks that berth's records of c are exactly the
// container's log as the daemon returns it: the same multiset of (stream,
// bytes). It reports what is missing and what is extra.
func compareWithDocker(t *testing.T, c *Ctr, recs []Record) {
	t.Helper()
	truth := dockerLog(t, c)
	type key struct{ stream, body string }
	count := map[key]int{}
	for _, l := range truth {
		count[key{l.Stream, l.Body}]++
	}
	for _, r := range recs {
		b, err := r.BodyBytes()
		if err != nil {
			continue
		}
		count[key{r.Stream(), string(b)}]--
	}
	var missing, extra []string
	for k, n := range count {
		for ; n > 0; n-- {
			missing = append(missing, fmt.Sprintf("%s %.80q", k.stream, k.body))
		}
		for ; n < 0; n++ {
			extra = append(extra, fmt.Sprintf("%s %.80q", k.stream, k.body))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: berth's %d records vs the daemon's %d log lines: %d missing, %d extra (duplicates or foreign)\nmissing: %s\nextra: %s",
			c.Name, len(recs), len(truth), len(missing), len(extra), head(missing, 8), head(extra, 8))
	} else {
		t.Logf("%s: berth's %d records equal the daemon's log line for line", c.Name, len(recs))
	}
}

func head(xs []string, n int) string {
	if len(xs) > n {
		return strings.Join(xs[:n], "\n  ") + fmt.Sprintf("\n  ... %d more", len(xs)-n)
	}
	return strings.Join(xs, "\n  ")
}
