package dockerapi

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/berthlog/berth/collectors"
	"github.com/berthlog/berth/config"
	"github.com/berthlog/berth/internal/testpki"
)

// testCerts is a test PKI on disk: a CA, a server certificate for
// 127.0.0.1, and certificate directories as DOCKER_CERT_PATH holds them.
type testCerts struct {
	ca     *testpki.CA
	server testpki.Pair
	// good holds ca.pem, cert.pem (a client certificate) and key.pem.
	good string
	// otherCA holds another CA's ca.pem with a client certificate of it.
	otherCA string
	// caOnly holds ca.pem alone.
	caOnly string
	// certNoKey holds ca.pem and cert.pem, no key.pem.
	certNoKey string
	// empty holds nothing.
	empty string
	// home has .docker/ with the good files (the CLI's default cert path).
	home string
	// bareHome has no .docker.
	bareHome string
}

func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	ca, err := testpki.NewCA("berth test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testpki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherClient, err := other.Client()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	c := &testCerts{ca: ca, server: server}
	dir := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	c.good, c.otherCA, c.caOnly, c.certNoKey, c.empty = dir("good"), dir("other"), dir("caonly"), dir("certnokey"), dir("empty")
	c.home, c.bareHome = dir("home"), dir("barehome")
	for d, ca := range map[string]*testpki.CA{c.good: ca, filepath.Join(c.home, ".docker"): ca} {
		if err := testpki.WriteCertPath(d, ca, client); err != nil {
			t.Fatal(err)
		}
	}
	if err := testpki.WriteCertPath(c.otherCA, other, otherClient); err != nil {
		t.Fatal(err)
	}
	write := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(c.caOnly, "ca.pem"), ca.PEM)
	write(filepath.Join(c.certNoKey, "ca.pem"), ca.PEM)
	write(filepath.Join(c.certNoKey, "cert.pem"), client.CertPEM)
	return c
}

// serverTLS is the fake daemon's TLS, as dockerd --tlsverify has it: its
// certificate, and client certificates required and verified against ca.
func (c *testCerts) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := c.server.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: c.ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestResolveTLS: where TLS comes from and what it verifies, as the docker
// CLI reads the environment, with docker_tls taking its place when set; and
// that TLS asked for without usable certificates is an error naming the
// missing file, never plaintext.
func TestResolveTLS(t *testing.T) {
	c := newTestCerts(t)
	in := func(dir, name string) string { return filepath.Join(dir, name) }
	for _, tc := range []struct {
		name   string
		scheme string
		conf   config.DockerTLS
		env    map[string]string
		want   *tlsSettings // nil with wantErr "": plaintext
		// wantErr: the error contains each of these.
		wantErr []string
	}{
		{name: "tcp, nothing set: plaintext", scheme: "tcp"},
		{name: "unix ignores the environment", scheme: "unix", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.empty}},
		{name: "https alone: verified against the system's CAs", scheme: "https", want: &tlsSettings{}},
		{name: "DOCKER_TLS_VERIFY with DOCKER_CERT_PATH", scheme: "tcp",
			env:  map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.good},
			want: &tlsSettings{caFile: in(c.good, "ca.pem"), certFile: in(c.good, "cert.pem"), keyFile: in(c.good, "key.pem")}},
		{name: "DOCKER_TLS_VERIFY=0 still verifies (any value, as the CLI reads it)", scheme: "tcp",
			env:  map[string]string{"DOCKER_TLS_VERIFY": "0", "DOCKER_CERT_PATH": c.good},
			want: &tlsSettings{caFile: in(c.good, "ca.pem"), certFile: in(c.good, "cert.pem"), keyFile: in(c.good, "key.pem")}},
		{name: "DOCKER_TLS_VERIFY without DOCKER_CERT_PATH: $HOME/.docker", scheme: "tcp",
			env: map[string]string{"DOCKER_TLS_VERIFY": "1", "HOME": c.home},
			want: &tlsSettings{caFile: in(c.home, ".docker/ca.pem"), certFile: in(c.home, ".docker/cert.pem"),
				keyFile: in(c.home, ".docker/key.pem")}},
		{name: "DOCKER_TLS_VERIFY without DOCKER_CERT_PATH or HOME", scheme: "tcp",
			env: map[string]string{"DOCKER_TLS_VERIFY": "1"}, wantErr: []string{"DOCKER_CERT_PATH is not set"}},
		{name: "DOCKER_TLS_VERIFY, $HOME/.docker missing", scheme: "tcp",
			env:     map[string]string{"DOCKER_TLS_VERIFY": "1", "HOME": c.bareHome},
			wantErr: []string{"DOCKER_CERT_PATH unset", in(c.bareHome, ".docker/ca.pem") + " is missing"}},
		{name: "DOCKER_TLS_VERIFY, empty DOCKER_CERT_PATH", scheme: "tcp",
			env:     map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.empty},
			wantErr: []string{"DOCKER_CERT_PATH=" + c.empty, in(c.empty, "ca.pem") + " is missing"}},
		{name: "DOCKER_TLS_VERIFY, cert.pem without key.pem", scheme: "tcp",
			env:     map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.certNoKey},
			wantErr: []string{"DOCKER_CERT_PATH=" + c.certNoKey, in(c.certNoKey, "key.pem") + " is missing"}},
		{name: "DOCKER_TLS_VERIFY, ca.pem alone: no client certificate", scheme: "tcp",
			env:  map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.caOnly},
			want: &tlsSettings{caFile: in(c.caOnly, "ca.pem")}},
		{name: "DOCKER_CERT_PATH alone: TLS, verified", scheme: "tcp",
			env:  map[string]string{"DOCKER_CERT_PATH": c.good},
			want: &tlsSettings{caFile: in(c.good, "ca.pem"), certFile: in(c.good, "cert.pem"), keyFile: in(c.good, "key.pem")}},
		{name: "DOCKER_CERT_PATH alone without ca.pem", scheme: "tcp",
			env: map[string]string{"DOCKER_CERT_PATH": c.empty}, wantErr: []string{in(c.empty, "ca.pem") + " is missing"}},
		{name: "DOCKER_TLS: the explicit way not to verify", scheme: "tcp",
			env:  map[string]string{"DOCKER_TLS": "1", "DOCKER_CERT_PATH": c.good},
			want: &tlsSettings{insecureSkipVerify: true, certFile: in(c.good, "cert.pem"), keyFile: in(c.good, "key.pem")}},
		{name: "DOCKER_TLS without certificates", scheme: "tcp",
			env: map[string]string{"DOCKER_TLS": "1", "HOME": c.bareHome}, want: &tlsSettings{insecureSkipVerify: true}},
		{name: "DOCKER_TLS_VERIFY wins over DOCKER_TLS", scheme: "tcp",
			env:  map[string]string{"DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.caOnly},
			want: &tlsSettings{caFile: in(c.caOnly, "ca.pem")}},
		{name: "docker_tls wins over the environment", scheme: "tcp",
			conf: config.DockerTLS{CAFile: in(c.good, "ca.pem"), CertFile: in(c.good, "cert.pem"), KeyFile: in(c.good, "key.pem")},
			env:  map[string]string{"DOCKER_TLS": "1", "DOCKER_CERT_PATH": c.empty},
			want: &tlsSettings{caFile: in(c.good, "ca.pem"), certFile: in(c.good, "cert.pem"), keyFile: in(c.good, "key.pem")}},
		{name: "docker_tls.ca_file alone", scheme: "tcp", conf: config.DockerTLS{CAFile: in(c.good, "ca.pem")},
			want: &tlsSettings{caFile: in(c.good, "ca.pem")}},
		{name: "docker_tls.insecure_skip_verify alone", scheme: "tcp", conf: config.DockerTLS{InsecureSkipVerify: true},
			want: &tlsSettings{insecureSkipVerify: true}},
		{name: "docker_tls.ca_file missing", scheme: "tcp", conf: config.DockerTLS{CAFile: in(c.empty, "ca.pem")},
			wantErr: []string{"docker_tls.ca_file", in(c.empty, "ca.pem")}},
		{name: "docker_tls.key_file missing", scheme: "tcp",
			conf:    config.DockerTLS{CAFile: in(c.good, "ca.pem"), CertFile: in(c.good, "cert.pem"), KeyFile: in(c.empty, "key.pem")},
			wantErr: []string{"docker_tls.key_file", in(c.empty, "key.pem")}},
		{name: "docker_tls.cert_file without key_file", scheme: "tcp", conf: config.DockerTLS{CertFile: in(c.good, "cert.pem")},
			wantErr: []string{"cert_file and key_file go together"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveTLS(tc.scheme, tc.conf, envOf(tc.env))
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("resolveTLS = %+v, want an error containing %q", got, tc.wantErr)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveTLS: %v", err)
			}
			if (got == nil) != (tc.want == nil) {
				t.Fatalf("resolveTLS = %+v, want %+v", got, tc.want)
			}
			if got == nil {
				return
			}
			g, w := *got, *tc.want
			g.from, w.from = "", ""
			if g != w {
				t.Errorf("resolveTLS = %+v, want %+v", g, w)
			}
			if _, err := got.config(); err != nil {
				t.Errorf("config(): %v", err)
			}
		})
	}
}

// TestNewRefusesTLSWithoutCertificates: New, not the first connection, says
// that DOCKER_TLS_VERIFY has no certificates to use.
func TestNewRefusesTLSWithoutCertificates(t *testing.T) {
	empty := t.TempDir()
	_, err := New(config.Docker{DockerHost: "tcp://127.0.0.1:2376"}, config.Bursts{},
		envOf(map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": empty}))
	if err == nil || !strings.Contains(err.Error(), "DOCKER_CERT_PATH="+empty) || !strings.Contains(err.Error(), "ca.pem is missing") {
		t.Fatalf("New: %v, want an error naming DOCKER_CERT_PATH and ca.pem", err)
	}
}

// TestTLSDaemon: a daemon that speaks TLS and requires client certificates
// (dockerd --tlsverify) answers berth with the right certificates; every
// wrong setup is refused with an error that names the problem, classified by
// its type.
func TestTLSDaemon(t *testing.T) {
	c := newTestCerts(t)
	d := newTCPFakeDaemon(t, c.serverTLS(t))
	d.setList([]map[string]any{{"Id": "c1", "Names": []string{"/one"}, "Image": "app:1", "ImageID": "sha256:1", "State": "running"}})
	verified := envOf(map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.good})

	t.Run("verified with a client certificate", func(t *testing.T) {
		cl := newTestClientEnv(t, d, config.Docker{}, config.Bursts{}, verified)
		if cl.scheme != "https" {
			t.Errorf("scheme %q, want https", cl.scheme)
		}
		if err := cl.ping(testCtx(t)); err != nil {
			t.Fatalf("ping: %v", err)
		}
		list, err := cl.List(testCtx(t))
		if err != nil || len(list) != 1 || list[0].Name != "one" {
			t.Fatalf("List = %+v, %v; want the container one", list, err)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		conf config.DockerTLS
		// is checks the error's type; want are parts of its message.
		is   func(error) bool
		want []string
	}{
		{name: "wrong CA", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.otherCA},
			is: func(err error) bool {
				var u x509.UnknownAuthorityError
				return errors.As(err, &u)
			},
			want: []string{"not signed by the CA berth trusts", "DOCKER_CERT_PATH=" + c.otherCA, "unknown authority"}},
		{name: "no client certificate", env: map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.caOnly},
			is: func(err error) bool {
				var op *net.OpError
				return errors.As(err, &op) && op.Op == "remote error"
			},
			want: []string{"refused berth's TLS handshake", "client certificate"}},
		{name: "plaintext to a TLS daemon", env: map[string]string{},
			is:   func(err error) bool { return errors.Is(err, errPlaintextToTLS) },
			want: []string{"speaks TLS", "DOCKER_TLS_VERIFY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newTestClientEnv(t, d, config.Docker{TLS: tc.conf}, config.Bursts{}, envOf(tc.env))
			err := cl.ping(testCtx(t))
			if err == nil {
				t.Fatal("ping succeeded")
			}
			if !tc.is(err) {
				t.Errorf("ping error %q (%T) is not of the expected type", err, errors.Unwrap(err))
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("ping error %q does not contain %q", err, s)
				}
			}
			if !strings.Contains(err.Error(), d.host()) {
				t.Errorf("ping error %q does not name the daemon %s", err, d.host())
			}
		})
	}

	t.Run("certificate not for the address", func(t *testing.T) {
		other, err := c.ca.Server(net.IPv4(10, 0, 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := other.TLS()
		if err != nil {
			t.Fatal(err)
		}
		conf := c.serverTLS(t)
		conf.Certificates = []tls.Certificate{cert}
		d2 := newTCPFakeDaemon(t, conf)
		cl := newTestClientEnv(t, d2, config.Docker{}, config.Bursts{}, verified)
		err = cl.ping(testCtx(t))
		var h x509.HostnameError
		if !errors.As(err, &h) || !strings.Contains(err.Error(), "not valid for the address") {
			t.Errorf("ping: %v, want an x509.HostnameError explained", err)
		}
	})
	t.Run("TLS to a plaintext daemon", func(t *testing.T) {
		plain := newTCPFakeDaemon(t, nil)
		cl := newTestClientEnv(t, plain, config.Docker{}, config.Bursts{}, verified)
		err := cl.ping(testCtx(t))
		if !errors.Is(err, http.ErrSchemeMismatch) || !strings.Contains(err.Error(), "does not speak TLS") {
			t.Errorf("ping: %v, want http.ErrSchemeMismatch explained", err)
		}
	})
}

// TestLogsIdleDeadlineOverTLS: the per-read deadline is armed on the TCP
// connection under TLS, so a silent TLS stream ends at the idle timeout as a
// plaintext one does (os.ErrDeadlineExceeded), and nothing is left running.
func TestLogsIdleDeadlineOverTLS(t *testing.T) {
	const idle = 300 * time.Millisecond
	c := newTestCerts(t)
	d := newTCPFakeDaemon(t, c.serverTLS(t))
	d.setContainer("c1", nonTTY("c1"))
	base := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	d.setLogs(func(lw *logWriter, _ *http.Request) {
		_ = lw.Frame(1, base, "one\n")
		lw.Stall()
	})
	cl := newTestClientEnv(t, d, config.Docker{}, config.Bursts{IdleTimeout: idle, MaxBurst: time.Minute},
		envOf(map[string]string{"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": c.good}))
	before := goleak.IgnoreCurrent()
	body, err := cl.Logs(testCtx(t), "c1", collectors.LogRequest{Follow: true, Tail: collectors.TailAll})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	r := waitRead(t, readAll(body), time.Minute)
	_ = body.Close()
	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read ended with %v, want os.ErrDeadlineExceeded", r.err)
	}
	if !bytes.Contains(r.data, []byte("one\n")) {
		t.Fatalf("the frame before the stall was not read: %q", r.data)
	}
	if silence := r.at.Sub(r.lastByte); silence < idle-50*time.Millisecond || silence > 30*time.Second {
		t.Errorf("the read ended %v after the last byte, want about the idle timeout %v", silence, idle)
	}
	goleak.VerifyNone(t, before)
}

// TestExplainPermission: a socket berth may not open is one error that
// names the socket and the fix, found by type (fs.ErrPermission, which
// EACCES and EPERM are), and kept in the chain.
func TestExplainPermission(t *testing.T) {
	for _, cause := range []error{
		&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)},
		&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EPERM)},
		&fs.PathError{Op: "open", Path: "/var/run/docker.sock", Err: fs.ErrPermission},
	} {
		err := explain(cause, "unix:///var/run/docker.sock", nil)
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("explain(%v) = %v, lost fs.ErrPermission", cause, err)
		}
		for _, s := range []string{"permission denied on the Docker socket /var/run/docker.sock", "docker group", "SupplementaryGroups=docker"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("explain(%v) = %q, does not contain %q", cause, err, s)
			}
		}
	}
	tcp := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EACCES)}
	if got := explain(tcp, "tcp://10.0.0.2:2376", nil); got != error(tcp) {
		t.Errorf("explain(%v) of a tcp:// host = %v, want it unchanged (no socket to name)", tcp, got)
	}
	other := errors.New("connection refused")
	if got := explain(other, "unix:///var/run/docker.sock", nil); got != other {
		t.Errorf("explain(%v) = %v, want it unchanged", other, got)
	}
}
