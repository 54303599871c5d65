// Package tlsfiles builds TLS configurations from PEM files, as a Kubernetes
// Secret or cert-manager provides them. Certificates are re-read when their
// files change, so a rotated certificate is used without a restart.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// Server returns the configuration of a TLS server; with ClientCAFile set
// it demands and verifies client certificates (mutual TLS).
func Server(f config.TLSFiles) (*tls.Config, error) {
	kp, err := newKeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
	}
	if f.ClientCAFile != "" {
		pool, err := loadPool(f.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns the configuration of a TLS client: CAFile verifies the
// server, CertFile and KeyFile are presented when the server asks.
func Client(f config.TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		kp, err := newKeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		}
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// keyPair re-reads its files when their modification time changes,
// looking at most every few seconds.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	mtime             time.Time
	checked           time.Time
}

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a certificate needs both cert_file and key_file")
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.cert != nil && time.Since(kp.checked) < 5*time.Second {
		return kp.cert, nil
	}
	kp.checked = time.Now()
	st, err := os.Stat(kp.certFile)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil // keep serving the last good one during a rotation
		}
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if kp.cert != nil && st.ModTime().Equal(kp.mtime) {
		return kp.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil
		}
		return nil, fmt.Errorf("certificate %s / key %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.mtime = &cert, st.ModTime()
	return kp.cert, nil
}
