package dockerapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/errdefs"

	"github.com/berthlog/berth/config"
)

// tlsSettings is the TLS berth speaks to a tcp:// daemon, resolved from
// docker_tls or the environment: the files it reads and whether it verifies
// the daemon's certificate.
type tlsSettings struct {
	caFile             string // "": the system's CA certificates
	certFile, keyFile  string // "": no client certificate
	insecureSkipVerify bool
	// from says where the settings came from, for messages: "docker_tls",
	// "DOCKER_CERT_PATH=/dir" or "DOCKER_CERT_PATH unset: /root/.docker".
	from string
}

// The files a DOCKER_CERT_PATH directory holds, as the docker CLI names them.
const (
	certPathCA   = "ca.pem"
	certPathCert = "cert.pem"
	certPathKey  = "key.pem"
)

// resolveTLS returns the TLS of a daemon reached with scheme (the
// docker_host's: unix, tcp, http or https), or nil for plaintext. A unix
// socket is never TLS. Otherwise docker_tls decides when any of its keys is
// set; else the environment, as the docker CLI reads it:
//
//   - DOCKER_TLS_VERIFY (any non-empty value) turns TLS on and verifies the
//     daemon's certificate against DOCKER_CERT_PATH/ca.pem, which must exist;
//   - DOCKER_TLS alone turns TLS on without verifying it: the explicit way to
//     say so;
//   - DOCKER_CERT_PATH alone turns TLS on, verified (the docker CLI would
//     ignore it and speak plaintext; berth never sends plaintext when
//     certificates are named);
//   - DOCKER_CERT_PATH unset: $HOME/.docker, the CLI's default;
//   - cert.pem and key.pem, berth's client certificate, are used when both
//     are there; one without the other is an error.
//
// An https:// docker_host with nothing else set is TLS verified against the
// system's CA certificates. Every file named must exist: an error names it
// and where its name came from.
func resolveTLS(scheme string, conf config.DockerTLS, getenv func(string) string) (*tlsSettings, error) {
	if scheme == "unix" {
		return nil, nil
	}
	if conf.IsSet() {
		s := &tlsSettings{caFile: conf.CAFile, certFile: conf.CertFile, keyFile: conf.KeyFile,
			insecureSkipVerify: conf.InsecureSkipVerify, from: "docker_tls"}
		if (s.certFile == "") != (s.keyFile == "") {
			return nil, errors.New("docker_tls: cert_file and key_file go together: set both or neither")
		}
		for _, f := range []struct{ key, path string }{{"ca_file", s.caFile}, {"cert_file", s.certFile}, {"key_file", s.keyFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("docker_tls.%s: %w", f.key, err)
			}
		}
		return s, nil
	}
	verify := getenv("DOCKER_TLS_VERIFY") != ""
	unverified := getenv("DOCKER_TLS") != "" && !verify
	certPath := getenv("DOCKER_CERT_PATH")
	on := verify || unverified || certPath != ""
	if !on {
		if scheme == "https" {
			return &tlsSettings{from: "docker_host " + scheme + "://"}, nil
		}
		return nil, nil
	}
	s := &tlsSettings{insecureSkipVerify: unverified, from: "DOCKER_CERT_PATH=" + certPath}
	if certPath == "" {
		home := getenv("HOME")
		if home == "" {
			return nil, errors.New("docker TLS: DOCKER_CERT_PATH is not set and neither is HOME (its default is $HOME/.docker); set DOCKER_CERT_PATH to the directory of ca.pem, cert.pem and key.pem")
		}
		certPath = filepath.Join(home, ".docker")
		s.from = "DOCKER_CERT_PATH unset, so " + certPath
	}
	exists := func(name string) (bool, error) {
		_, err := os.Stat(filepath.Join(certPath, name))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		}
		return false, fmt.Errorf("docker TLS (%s): %w", s.from, err)
	}
	hasCA, err := exists(certPathCA)
	if err != nil {
		return nil, err
	}
	if !s.insecureSkipVerify {
		if !hasCA {
			return nil, fmt.Errorf("docker TLS (%s): %s is missing: berth verifies the daemon's certificate against it (DOCKER_TLS_VERIFY or DOCKER_CERT_PATH is set); put the daemon's CA certificate there, or point DOCKER_CERT_PATH at the directory that has it", s.from, filepath.Join(certPath, certPathCA))
		}
		s.caFile = filepath.Join(certPath, certPathCA)
	}
	hasCert, err := exists(certPathCert)
	if err != nil {
		return nil, err
	}
	hasKey, err := exists(certPathKey)
	if err != nil {
		return nil, err
	}
	switch {
	case hasCert && hasKey:
		s.certFile, s.keyFile = filepath.Join(certPath, certPathCert), filepath.Join(certPath, certPathKey)
	case hasCert:
		return nil, fmt.Errorf("docker TLS (%s): %s is missing, the key of %s", s.from, filepath.Join(certPath, certPathKey), certPathCert)
	case hasKey:
		return nil, fmt.Errorf("docker TLS (%s): %s is missing, the certificate of %s", s.from, filepath.Join(certPath, certPathCert), certPathKey)
	}
	return s, nil
}

// config loads the files into a TLS client configuration.
func (s *tlsSettings) config() (*tls.Config, error) {
	// InsecureSkipVerify only when the user said so (DOCKER_TLS without
	// DOCKER_TLS_VERIFY, or docker_tls.insecure_skip_verify).
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: s.insecureSkipVerify}
	if s.caFile != "" {
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			return nil, fmt.Errorf("docker TLS (%s): %w", s.from, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("docker TLS (%s): %s holds no PEM certificate", s.from, s.caFile)
		}
		conf.RootCAs = pool
	}
	if s.certFile != "" {
		cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return nil, fmt.Errorf("docker TLS (%s): client certificate %s with key %s: %w", s.from, s.certFile, s.keyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// explain adds to a failed connection's error what the operator can do
// about it, classified by the error's type: a socket berth may not open,
// a daemon certificate that does not verify, a handshake the daemon refused,
// TLS spoken to a plaintext daemon. Other errors come back as they are.
func explain(err error, host string, s *tlsSettings) error {
	from := "DOCKER_CERT_PATH or docker_tls"
	if s != nil {
		from = s.from
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	switch {
	case strings.HasPrefix(host, "unix://") && errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on the Docker socket %s: berth's user may not open it; add the user to the docker group (usermod -aG docker <user>), or under systemd give berth's unit SupplementaryGroups=docker: %w", socketOf(host), err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("the daemon's TLS certificate at %s is not signed by the CA berth trusts (%s): certificate signed by unknown authority: %w", host, from, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("the daemon's TLS certificate is not valid for the address in %s: %w", host, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("the daemon's TLS certificate at %s is invalid (expired, not yet valid or not for a server): %w", host, err)
	case errors.As(err, &verify):
		return fmt.Errorf("the daemon's TLS certificate at %s does not verify (%s): %w", host, from, err)
	case errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &record):
		return fmt.Errorf("the daemon at %s does not speak TLS, but berth does (%s): use a plaintext tcp:// port, or enable TLS on the daemon: %w", host, from, err)
	case s == nil && errdefs.IsInvalidParameter(err) && strings.Contains(err.Error(), "HTTP request to an HTTPS server"):
		// The daemon's TLS listener answers a plaintext request so (400):
		// its words are the only sign of it.
		return fmt.Errorf("%w: the daemon at %s speaks TLS; set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (or docker_tls.*) to reach it: %w", errPlaintextToTLS, host, err)
	case s != nil && errors.As(err, &op) && op.Op == "remote error":
		return fmt.Errorf("the daemon at %s refused berth's TLS handshake (%s): it wants a client certificate signed by its CA (cert.pem and key.pem, or docker_tls.cert_file and key_file): %w", host, from, err)
	}
	return err
}

// socketOf is a unix:// host's socket path.
func socketOf(host string) string { return strings.TrimPrefix(host, "unix://") }

// errPlaintextToTLS is the cause of a plaintext request a TLS daemon
// answered with its complaint.
var errPlaintextToTLS = errors.New("plaintext request to a TLS daemon")
