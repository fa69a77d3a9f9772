package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often Run checks the files unless told
// otherwise.
const DefaultPollInterval = 5 * time.Second

// Reloader holds the current certificate of a cert and key file pair.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration
	cert              atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // serialises loads; guards seen
	seen [2]stamp
}

// stamp is what Run compares to notice a changed file.
type stamp struct {
	modTime time.Time
	size    int64
}

// Option configures a Reloader.
type Option func(*Reloader)

// PollInterval makes Run check the files every d; d <= 0 keeps
// DefaultPollInterval.
func PollInterval(d time.Duration) Option {
	return func(r *Reloader) {
		if d > 0 {
			r.interval = d
		}
	}
}

// New loads the pair from certFile and keyFile (PEM) and returns a Reloader
// serving it, or an error if the files cannot be read or do not make a
// pair. log receives reload events; nil discards them.
func New(certFile, keyFile string, log *slog.Logger, opts ...Option) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, interval: DefaultPollInterval}
	for _, opt := range opts {
		opt(r)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	if err := r.load(st); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate returns the current certificate, for tls.Config.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// TLSConfig returns a server configuration serving the current
// certificate: TLS 1.2 at least, HTTP/2 then HTTP/1.1 offered by ALPN.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.GetCertificate,
	}
}

// Reload loads the files now, whether or not they changed, and serves the
// pair if it parses. On error the current certificate stays.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		return err
	}
	return r.load(st)
}

// Run checks the files every poll interval until ctx ends, loading them
// when their modification time or size changed. A pair that fails to load
// is logged and kept out; it is tried again when the files change again.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.check()
	}
}

// check loads the pair if the files changed since the last attempt.
func (r *Reloader) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		// A file missing for a moment (replaced by a rename) is normal;
		// the next change is tried.
		r.log.Debug("tls certificate files unreadable", "err", err)
		return
	}
	if st == r.seen {
		return
	}
	if err := r.load(st); err != nil {
		r.log.Warn("tls certificate reload failed, keeping the current one", "err", err)
	}
}

// stat returns the files' stamps. Called with mu held.
func (r *Reloader) stat() ([2]stamp, error) {
	var st [2]stamp
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return st, err
		}
		st[i] = stamp{modTime: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// load parses the pair, records st as seen whatever the outcome, and
// serves the pair if it parsed. Called with mu held.
func (r *Reloader) load(st [2]stamp) error {
	r.seen = st
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil { // GODEBUG x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("tls certificate %s: %w", r.certFile, err)
		}
	}
	r.cert.Store(&cert)
	r.log.Info("tls certificate loaded",
		"subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.Text(16),
		"not_after", cert.Leaf.NotAfter)
	return nil
}
