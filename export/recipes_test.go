package export

// The README's backend recipes, each read from README.md (between its
// <!-- recipe-NAME:begin/end --> markers) and run against a local stand-in
// of the backend; only the example host and file paths are replaced.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/telemetry"
)

// recipe returns the README's recipe block called name, without its fences.
func recipe(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- recipe-"+name+":begin -->\n")
	block, _, ok2 := strings.Cut(rest, "<!-- recipe-"+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no recipe-%s block", name)
	}
	block = strings.TrimSpace(block)
	_, body, _ := strings.Cut(block, "\n")
	return strings.TrimSuffix(body, "```")
}

// replaceIn replaces old with new in s, failing if s does not contain it.
func replaceIn(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the recipe no longer contains %q:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}

// recipeConfig loads a YAML recipe as berth's configuration file.
func recipeConfig(t *testing.T, yml string) config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// standIn is an OTLP/HTTP backend that accepts everything and records each
// request's path and headers.
type standIn struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (s *standIn) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// exportOne builds berth's log exporter and exports one record, bounded by
// timeout.
func exportOne(c config.OTLP, getenv func(string) string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exp, err := NewOTLPExporter(ctx, c, getenv)
	if err != nil {
		return err
	}
	defer exp.Shutdown(context.Background())
	return exp.Export(ctx, nil)
}

func TestRecipeLoki(t *testing.T) {
	backend := &standIn{}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	cfg := recipeConfig(t, replaceIn(t, recipe(t, "loki"), "http://loki.example.com:3100", srv.URL))

	if err := exportOne(cfg.OTLP, func(string) string { return "" }, 10*time.Second); err != nil {
		t.Fatalf("export: %v", err)
	}
	// berth's own telemetry, flushed at shutdown: nothing may reach Loki.
	self, err := telemetry.New(context.Background(), cfg.Telemetry, cfg.OTLP, func(string) string { return "" }, "test", "h", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, span := self.Settings().Tracer().Start(context.Background(), "x")
	span.End()
	if err := self.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := backend.requests()
	if len(reqs) != 1 {
		t.Fatalf("Loki got %d requests, want the one export (berth's own telemetry off)", len(reqs))
	}
	if reqs[0].URL.Path != "/otlp/v1/logs" || reqs[0].Header.Get("X-Scope-OrgID") != "tenant-1" {
		t.Errorf("Loki got %s with X-Scope-OrgID %q; want /otlp/v1/logs with tenant-1", reqs[0].URL.Path, reqs[0].Header.Get("X-Scope-OrgID"))
	}
}

func TestRecipeAuthHeader(t *testing.T) {
	backend := &standIn{}
	srv := httptest.NewServer(backend)
	defer srv.Close()
	cfg := recipeConfig(t, replaceIn(t, recipe(t, "auth"), "https://otlp.example.com:4318", srv.URL))
	if err := exportOne(cfg.OTLP, func(string) string { return "" }, 10*time.Second); err != nil {
		t.Fatalf("export: %v", err)
	}
	reqs := backend.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer <token>" || reqs[0].URL.Path != "/v1/logs" {
		t.Fatalf("the backend got %d requests; want one to /v1/logs with Authorization: Bearer <token> (first: %v)", len(reqs), reqs)
	}
}

// pki is a CA and the server and client certificates it signed, as PEM
// files in dir: ca.pem, client.pem, client-key.pem (the recipe's names).
type pki struct {
	pool       *x509.CertPool
	serverCert tls.Certificate
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.pem", "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliDER, cliKey := issue(3, "berth", x509.ExtKeyUsageClientAuth, nil)
	write("client.pem", "CERTIFICATE", cliDER)
	cliKeyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	write("client-key.pem", "PRIVATE KEY", cliKeyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{pool: pool, serverCert: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}
}

// tlsRecipeEnv sets the recipe drop-in's Environment= lines (the mTLS ones
// only when mtls) in the process environment, where the OpenTelemetry
// exporter reads them, with the stand-in's URL and dir for the paths.
func tlsRecipeEnv(t *testing.T, url, dir string, mtls bool) {
	t.Helper()
	dropIn := replaceIn(t, recipe(t, "tls"), "https://otlp.example.com:4318", url)
	dropIn = replaceIn(t, dropIn, "/etc/berth/tls/", dir+"/")
	n := 0
	for _, line := range strings.Split(dropIn, "\n") {
		kv, ok := strings.CutPrefix(line, "Environment=")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.Contains(k, "CLIENT_") && !mtls {
			continue
		}
		t.Setenv(k, v)
		n++
	}
	if n < 2 {
		t.Fatalf("the TLS recipe sets %d variables; want the endpoint and the CA at least:\n%s", n, dropIn)
	}
}

func startTLSStandIn(t *testing.T, p pki, clientAuth tls.ClientAuthType) (*httptest.Server, *standIn) {
	t.Helper()
	backend := &standIn{}
	srv := httptest.NewUnstartedServer(backend)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: clientAuth, ClientCAs: p.pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, backend
}

func TestRecipeTLSCustomCA(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	srv, backend := startTLSStandIn(t, p, tls.NoClientCert)
	tlsRecipeEnv(t, srv.URL, dir, false)
	if err := exportOne(config.OTLP{}, os.Getenv, 10*time.Second); err != nil {
		t.Fatalf("export with the recipe's CA: %v", err)
	}
	if n := len(backend.requests()); n != 1 {
		t.Fatalf("the TLS backend got %d requests, want 1", n)
	}
	// Control: without the CA the server's certificate is not trusted.
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "")
	if err := exportOne(config.OTLP{}, os.Getenv, 2*time.Second); err == nil {
		t.Error("the export succeeded without the CA: the test proves nothing")
	}
}

func TestRecipeMTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	srv, backend := startTLSStandIn(t, p, tls.RequireAndVerifyClientCert)
	tlsRecipeEnv(t, srv.URL, dir, true)
	if err := exportOne(config.OTLP{}, os.Getenv, 10*time.Second); err != nil {
		t.Fatalf("export with the recipe's client certificate: %v", err)
	}
	reqs := backend.requests()
	if len(reqs) != 1 || reqs[0].TLS == nil || len(reqs[0].TLS.PeerCertificates) == 0 || reqs[0].TLS.PeerCertificates[0].Subject.CommonName != "berth" {
		t.Fatalf("the mTLS backend got %d requests; want one with berth's client certificate", len(reqs))
	}
	// Control: without the client certificate the backend refuses.
	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "")
	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "")
	if err := exportOne(config.OTLP{}, os.Getenv, 2*time.Second); err == nil {
		t.Error("the export succeeded without a client certificate: the test proves nothing")
	}
}
