package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/certs"
	"github.com/maxloyalty/notify/internal/testenv"
)

// logBuffer is a log destination safe for the Run goroutine and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// pair is one certificate written by certs.SelfSigned.
type pair struct {
	cert, key string
	pool      *x509.CertPool
	serial    *big.Int
}

func selfSigned(t *testing.T, dir string, hosts ...string) pair {
	t.Helper()
	certFile, keyFile, pool, err := certs.SelfSigned(dir, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return pair{certFile, keyFile, pool, leaf(t, certFile).SerialNumber}
}

func leaf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveTLS serves cfg on a loopback port: every connection completes a
// handshake and is closed.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, cfg)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			})
		}
	})
	t.Cleanup(func() {
		tl.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshake connects to addr trusting pool and returns the connection state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// served returns the serial of the certificate addr serves, verified
// against pool.
func served(addr string, pool *x509.CertPool) (*big.Int, error) {
	st, err := handshake(addr, &tls.Config{RootCAs: pool})
	if err != nil {
		return nil, err
	}
	return st.PeerCertificates[0].SerialNumber, nil
}

// run starts r.Run until the test ends.
func run(t *testing.T, r *certs.Reloader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestReloaderServesRenewedCertificate(t *testing.T) {
	dir := t.TempDir()
	first := selfSigned(t, dir)
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := certs.New(first.cert, first.key, log, certs.PollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	run(t, r)
	addr := serveTLS(t, r.TLSConfig())

	got, err := served(addr, first.pool)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if got.Cmp(first.serial) != 0 {
		t.Fatalf("served serial %x, want %x", got, first.serial)
	}

	// Renewal by renaming new files over the old ones.
	second := selfSigned(t, t.TempDir())
	for _, mv := range [][2]string{{second.cert, first.cert}, {second.key, first.key}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 5*time.Second, "the renewed certificate", func() bool {
		got, err := served(addr, second.pool)
		return err == nil && got.Cmp(second.serial) == 0
	})

	// A broken certificate file is logged and the renewed one stays.
	failures := logs.count("reload failed")
	if err := os.WriteFile(first.cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the failed reload", func() bool { return logs.count("reload failed") > failures })
	got, err = served(addr, second.pool)
	if err != nil {
		t.Fatalf("handshake after a broken file: %v", err)
	}
	if got.Cmp(second.serial) != 0 {
		t.Fatalf("served serial %x after a broken file, want %x", got, second.serial)
	}

	// Rewritten in place (certificate, then key): tried again, served.
	third := selfSigned(t, dir)
	testenv.Eventually(t, 5*time.Second, "the certificate written in place", func() bool {
		got, err := served(addr, third.pool)
		return err == nil && got.Cmp(third.serial) == 0
	})
}

func TestNewRejectsBadPairs(t *testing.T) {
	dir := t.TempDir()
	good := selfSigned(t, mkdir(t, dir, "good"))
	other := selfSigned(t, mkdir(t, dir, "other"))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name      string
		cert, key string
	}{
		{"missing certificate", missing, good.key},
		{"missing key", good.cert, missing},
		{"garbage certificate", garbage, good.key},
		{"garbage key", good.cert, garbage},
		{"key of another certificate", good.cert, other.key},
		{"swapped", good.key, good.cert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := certs.New(tt.cert, tt.key, nil); err == nil {
				t.Fatalf("New = %v, nil; want an error", r)
			}
		})
	}
	if _, err := certs.New(good.cert, good.key, nil); err != nil {
		t.Fatalf("New with a good pair: %v", err)
	}
}

func TestReloadKeepsCertificateOnError(t *testing.T) {
	p := selfSigned(t, t.TempDir())
	r, err := certs.New(p.cert, p.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a garbage key succeeded")
	}
	c, err := r.GetCertificate(nil)
	if err != nil || c == nil || c.Leaf.SerialNumber.Cmp(p.serial) != 0 {
		t.Fatalf("GetCertificate = %v, %v; want the first certificate", c, err)
	}
	next := selfSigned(t, filepath.Dir(p.cert))
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload of a good pair: %v", err)
	}
	if c, _ := r.GetCertificate(nil); c.Leaf.SerialNumber.Cmp(next.serial) != 0 {
		t.Fatalf("serving serial %x after Reload, want %x", c.Leaf.SerialNumber, next.serial)
	}
}

func TestTLSConfig(t *testing.T) {
	p := selfSigned(t, t.TempDir())
	r, err := certs.New(p.cert, p.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, r.TLSConfig())
	tests := []struct {
		name      string
		client    *tls.Config
		wantErr   string // in the handshake error; "" for none
		wantProto string
	}{
		{"h2", &tls.Config{RootCAs: p.pool, NextProtos: []string{"h2"}}, "", "h2"},
		{"http/1.1", &tls.Config{RootCAs: p.pool, NextProtos: []string{"http/1.1"}}, "", "http/1.1"},
		{"prefers h2", &tls.Config{RootCAs: p.pool, NextProtos: []string{"http/1.1", "h2"}}, "", "h2"},
		{"TLS 1.2", &tls.Config{RootCAs: p.pool, MaxVersion: tls.VersionTLS12}, "", ""},
		// The server, not the client, refuses TLS 1.1.
		{"TLS 1.1 refused", &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, "remote error: tls: protocol version not supported", ""},
		{"untrusted", &tls.Config{}, "unknown authority", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := handshake(addr, tt.client)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("handshake error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.NegotiatedProtocol != tt.wantProto {
				t.Errorf("negotiated %q, want %q", st.NegotiatedProtocol, tt.wantProto)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		names []string // verified against the pool
	}{
		{"defaults", nil, []string{"127.0.0.1", "::1", "localhost"}},
		{"dns and ip", []string{"notify.test", "10.1.2.3"}, []string{"notify.test", "10.1.2.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := selfSigned(t, dir, tt.hosts...)
			again := selfSigned(t, t.TempDir(), tt.hosts...)
			if p.serial.Cmp(again.serial) == 0 {
				t.Error("two calls made the same serial")
			}
			c := leaf(t, p.cert)
			for _, name := range tt.names {
				if _, err := c.Verify(x509.VerifyOptions{Roots: p.pool, DNSName: name}); err != nil {
					t.Errorf("verify for %s: %v", name, err)
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: p.pool, DNSName: "elsewhere.test"}); err == nil {
				t.Error("certificate verified for a host it does not name")
			}
			if fi, err := os.Stat(p.key); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
			}
		})
	}
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
