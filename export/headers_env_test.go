package export

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/berthlog/berth/config"
)

// exportOneTo builds the log exporter for c, exports one record to it and
// returns the headers of the request the stand-in backend received.
func exportOneTo(t *testing.T, c config.OTLP, getenv func(string) string, got *http.Header, mu *sync.Mutex) http.Header {
	t.Helper()
	exp, err := NewOTLPExporter(context.Background(), c, getenv)
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(context.Background())
	if err := exp.Export(context.Background(), nil); err != nil {
		t.Fatalf("export: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got.Clone()
}

// TestOTLPHeadersFromEnvironment: the standard OTEL_EXPORTER_OTLP_HEADERS sets headers whose names have
// hyphens, such as Loki's X-Scope-OrgID; otlp.headers, when set, replace
// them (the file's keys take precedence over OTEL_*).
func TestOTLPHeadersFromEnvironment(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "X-Scope-OrgID=tenant-1,Authorization=Bearer%20xyz"}
	getenv := func(k string) string { return env[k] }

	h := exportOneTo(t, config.OTLP{Endpoint: srv.URL}, getenv, &got, &mu)
	if h.Get("X-Scope-OrgID") != "tenant-1" || h.Get("Authorization") != "Bearer xyz" {
		t.Errorf("with OTEL_EXPORTER_OTLP_HEADERS: X-Scope-OrgID %q, Authorization %q; want tenant-1, Bearer xyz", h.Get("X-Scope-OrgID"), h.Get("Authorization"))
	}
	h = exportOneTo(t, config.OTLP{Endpoint: srv.URL, Headers: map[string]string{"X-Scope-OrgID": "tenant-2"}}, getenv, &got, &mu)
	if h.Get("X-Scope-OrgID") != "tenant-2" || h.Get("Authorization") != "" {
		t.Errorf("with otlp.headers too: X-Scope-OrgID %q, Authorization %q; want tenant-2 and none", h.Get("X-Scope-OrgID"), h.Get("Authorization"))
	}
}
